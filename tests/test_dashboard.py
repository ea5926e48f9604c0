"""The Grafana dashboard: it loads, filters by target, and queries only metrics ckptd exports."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from ckptd.metrics import Metrics
from tests.metric_names import (
    ROOT,
    dashboard_queries,
    from_registry,
    grafana_to_promql,
    promql_metric_names,
    sample_names,
)

DASHBOARD = ROOT / "config/grafana/ckptd-dashboard.json"


def dashboard() -> dict[str, Any]:
    """Return the shipped dashboard."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_titles() -> list[str]:
    """Return the titles of the dashboard's graph panels (not its rows)."""
    return [p["title"] for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_loads_with_a_target_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}

    assert "ckptd" == dashboard()["uid"]
    assert {"datasource", "instance", "target", "window"} <= variables.keys()
    assert variables["target"]["multi"] and variables["target"]["includeAll"]


def test_every_panel_query_filters_by_target_or_is_per_instance() -> None:
    unfiltered = [
        where
        for where, expression in dashboard_queries(dashboard())
        if where.startswith("panel")
        and 'target=~"$target"' not in expression
        and 'instance=~"$instance"' not in expression
    ]

    assert [] == unfiltered


def test_every_query_names_only_metrics_ckptd_exports() -> None:
    registry = CollectorRegistry()
    Metrics(registry).declare([("solver", "cpp-solver")])
    exported = sample_names(from_registry(registry))

    unknown = {
        where: sorted(promql_metric_names(grafana_to_promql(expression)) - exported)
        for where, expression in dashboard_queries(dashboard())
    }

    assert {} == {where: names for where, names in unknown.items() if names}


def test_the_issue_s_panels_are_there() -> None:
    text = json.dumps(dashboard())

    for metric in (
        "ckptd_checkpoint_successes_total",
        "ckptd_checkpoint_duration_seconds_bucket",
        "ckptd_app_frozen_seconds_bucket",
        "ckptd_checkpoint_size_bytes",
        "ckptd_retained_bytes",
        "ckptd_last_success_timestamp_seconds",
        "ckptd_expected_interval_seconds",
        "ckptd_checkpoint_failures_total",
    ):
        assert metric in text, metric

    assert len(panel_titles()) == len(set(panel_titles())), "panel titles repeat"


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    overlaps = []
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    overlaps.append((cells[(x, y)], panel["title"]))
                cells[(x, y)] = panel["title"]

    assert [] == sorted(set(overlaps))
