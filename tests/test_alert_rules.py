"""The shipped alert rules: valid for promtool, unit-tested per alert, naming real metrics only."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from ckptd.metrics import Metrics
from tests.metric_names import ROOT, from_registry, promql_metric_names, sample_names
from tests.tools import require_tool

RULES = ROOT / "config/prometheus/ckptd-alerts.yml"
RULE_TESTS = sorted((ROOT / "tests/prometheus").glob("*.yml"))
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_OWN = {"up"}


def rules() -> list[dict[str, Any]]:
    """Return every rule of the shipped rules file."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository's root; return its completed process."""
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_promtool_check_rules_accepts_the_rules_file() -> None:
    result = promtool("check", "rules", str(RULES))

    assert 0 == result.returncode, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, RULE_TESTS))

    assert 0 == result.returncode, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}

    assert set() == alerts - fired, "alerts without a promtool case that expects them to fire"


def test_rules_name_only_metrics_ckptd_exports() -> None:
    registry = CollectorRegistry()
    Metrics(registry).declare([("solver", "cpp-solver")])
    exported = sample_names(from_registry(registry)) | PROMETHEUS_OWN

    unknown = {
        rule.get("alert", rule.get("record")): sorted(promql_metric_names(rule["expr"]) - exported)
        for rule in rules()
    }

    assert {} == {name: names for name, names in unknown.items() if names}


def test_rule_tests_load_the_shipped_file() -> None:
    for path in RULE_TESTS:
        listed = yaml.safe_load(path.read_text())["rule_files"]

        assert [RULES] == [(path.parent / entry).resolve() for entry in listed]


def test_thresholds_come_from_the_expected_interval() -> None:
    stale = next(rule for rule in rules() if rule.get("alert") == "CkptdCheckpointStale")

    assert "ckptd_expected_interval_seconds" in promql_metric_names(stale["expr"])
