"""Reading metric names three ways: from a registry or /metrics text, the README, and PromQL.

The README table, the alert rules and the dashboard are all checked against what ckptd really
exports, so every check shares these readers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]

# The sample names each metric type adds to its family name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


@dataclass(frozen=True)
class Exported:
    """One metric as ckptd exports it: the name to query, its type and its labels."""

    name: str
    type: str
    labels: frozenset[str] | None  # None: no series yet, so the labels cannot be seen


def exported(families: Iterable[Metric]) -> dict[str, Exported]:
    """Return ckptd's metrics keyed by the name an operator queries (counters with _total)."""
    families = list(families)
    # The text format shows a counter's or histogram's `_created` samples as a gauge of their own;
    # they belong to the metric's README row.
    timed = {f.name + "_created" for f in families if f.type in ("counter", "histogram", "summary")}
    found = {}
    for family in families:
        if family.name in timed:
            continue

        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        labels = None
        if family.samples:
            labels = frozenset(n for sample in family.samples for n in sample.labels if n != "le")

        name = family.name + suffix
        found[name] = Exported(name, family.type, labels)

    return found


def sample_names(families: Iterable[Metric]) -> set[str]:
    """Return every sample name a query may select, as the exposition format spells them."""
    names = set()
    for family in families:
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))

    return names


def from_registry(registry: CollectorRegistry) -> list[Metric]:
    """Return the families a registry serves."""
    return list(registry.collect())


def from_text(text: str) -> list[Metric]:
    """Return the families in a /metrics page."""
    return list(text_string_to_metric_families(text))


@dataclass(frozen=True)
class Row:
    """One row of the README's metrics table."""

    name: str
    type: str
    labels: frozenset[str]
    meaning: str


def readme_rows(readme: Path = ROOT / "README.md") -> dict[str, Row]:
    """Return the README's metrics table, keyed by metric name."""
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"`[a-z_:][a-z0-9_:]*`", cells[0]):
            continue

        name, kind, labels, meaning = cells
        rows[name.strip("`")] = Row(
            name.strip("`"), kind, frozenset(re.findall(r"`([a-z_]+)`", labels)), meaning
        )

    return rows


def promql_metric_names(expression: str) -> set[str]:
    """Return the metric names a PromQL expression selects, parsed by a real PromQL parser."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def table_problems(rows: dict[str, Row], metrics: dict[str, Exported]) -> list[str]:
    """Return what is wrong in the README table against the exported metrics, one line each."""
    problems = []
    for name in sorted(metrics.keys() - rows.keys()):
        metric = metrics[name]
        labels = ", ".join(f"`{label}`" for label in sorted(metric.labels or ()))
        problems.append(
            f"README.md metrics table has no row for {name}; add: "
            f"| `{name}` | {metric.type} | {labels} | <what it means> |"
        )

    for name in sorted(rows.keys() - metrics.keys()):
        problems.append(
            f"README.md metrics table has a row for {name}, which ckptd does not export"
        )

    for name in sorted(rows.keys() & metrics.keys()):
        row, metric = rows[name], metrics[name]
        if row.type != metric.type:
            problems.append(f"README.md row {name}: type {row.type!r}, exported as {metric.type!r}")

        if metric.labels is not None and row.labels != metric.labels:
            problems.append(
                f"README.md row {name}: labels {sorted(row.labels)}, "
                f"exported with {sorted(metric.labels)}"
            )

    return problems


# Grafana's own variables, and this dashboard's, replaced by something PromQL accepts.
_RANGE_VARIABLE = re.compile(r"\[\$\{?\w+\}?\]")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def grafana_to_promql(expression: str, window: str = "5m", value: str = "x") -> str:
    """Return a dashboard expression with its Grafana variables filled in, ready to run.

    A range variable (``[$window]``, ``[$__range]``) becomes ``window``; any other variable
    (``$target`` in a label matcher) becomes ``value``.
    """
    expression = _RANGE_VARIABLE.sub(f"[{window}]", expression)
    return _VARIABLE.sub(value, expression)


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (where, PromQL) for every panel query and query variable of a Grafana dashboard."""
    found = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels += panel.get("panels", [])
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))

    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue

        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        values = _LABEL_VALUES.match(text)
        found.append((f"variable ${variable['name']}", values[1] if values else text))

    return found
