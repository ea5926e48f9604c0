"""A real Prometheus scraping a real ckptd: series arrive, rules evaluate, a stopped container
goes stale. The live /metrics page is also what promtool, the README table and the rule and
dashboard name checks are held against.

One daemon, one Prometheus and one example container serve the whole module; the tests run in
file order and the last one stops the container.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import CKPTD, ROOT, docker, free_port, write_policy
from tests.metric_names import (
    dashboard_queries,
    exported,
    from_text,
    grafana_to_promql,
    promql_metric_names,
    readme_rows,
    sample_names,
    table_problems,
)
from tests.tools import require_tool

RULES = ROOT / "config/prometheus/ckptd-alerts.yml"
DASHBOARD = json.loads((ROOT / "config/grafana/ckptd-dashboard.json").read_text())
# A 5 s schedule: stale after 10 s without a good checkpoint, while one of the example app takes
# about a second (a few on a busy machine), so a healthy target never looks stale.
INTERVAL_S = 5


@dataclass
class Stack:
    """The running example container, ckptd and Prometheus of this module."""

    container: str
    metrics_port: int
    prometheus_url: str
    daemon: subprocess.Popen[str]
    daemon_log: Path

    def metrics_text(self) -> str:
        """Return ckptd's /metrics page as served now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def api(self, path: str, **params: str) -> Any:
        """Return the `data` of a Prometheus HTTP API answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.prometheus_url}{path}{query}", timeout=5) as answer:
            body = json.load(answer)

        assert "success" == body["status"], body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """Return the instant vector an expression evaluates to now."""
        return list(self.api("/api/v1/query", query=expression)["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Return the active (pending or firing) alerts called ``name``."""
        return [a for a in self.api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


def wait_until(what: str, check: Callable[[], Any], timeout: float, stack: Stack) -> Any:
    """Return check()'s first truthy result; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.daemon.poll() is None, stack.daemon_log.read_text()
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.5)

    raise AssertionError(f"{what} within {timeout} s; ckptd log:\n{stack.daemon_log.read_text()}")


def prometheus_config(folder: Path, metrics_port: int) -> Path:
    """Write a scrape config with a 1 s scrape and evaluation interval and the shipped rules."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "ckptd",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(app_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start the example app, ckptd on it every few seconds, and Prometheus scraping ckptd."""
    prometheus = require_tool("prometheus")
    folder = tmp_path_factory.mktemp("obs-prometheus")
    container = f"obs-{uuid.uuid4().hex[:8]}"
    settings = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=16", "-e", "STEP_MS=200"]
    metrics_port, web_port = free_port(), free_port()
    policy = write_policy(
        folder / "policy.yaml", container, metrics_port, schedule=f"{{every: {INTERVAL_S}s}}"
    )
    daemon_log = folder / "ckptd.log"
    processes: list[subprocess.Popen[str]] = []
    try:
        docker("run", "-d", "--name", container, *settings, app_image)
        with daemon_log.open("w") as log:
            daemon = subprocess.Popen(
                [*CKPTD, "run", "--config", str(policy)], stderr=log, text=True
            )
        processes.append(daemon)
        with (folder / "prometheus.log").open("w") as log:
            server = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={prometheus_config(folder, metrics_port)}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        processes.append(server)
        stack = Stack(container, metrics_port, f"http://127.0.0.1:{web_port}", daemon, daemon_log)
        wait_until("ckptd serves /metrics", stack.metrics_text, 30, stack)
        wait_until("prometheus is ready", lambda: _ready(stack.prometheus_url), 30, stack)
        yield stack
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        docker("rm", "-f", container, check=False)


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
        return bool(200 == answer.status)


def test_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=stack.metrics_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 0 == result.returncode, result.stdout + result.stderr


def test_readme_metrics_table_matches_the_live_registry(stack: Stack) -> None:
    problems = table_problems(readme_rows(), exported(from_text(stack.metrics_text())))

    assert [] == problems, "\n".join(problems)


def test_alert_rules_name_only_live_metrics(stack: Stack) -> None:
    live = sample_names(from_text(stack.metrics_text())) | {"up"}
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    unknown = {rule["alert"]: promql_metric_names(rule["expr"]) - live for rule in rules}

    assert {} == {name: names for name, names in unknown.items() if names}


def test_dashboard_names_only_live_metrics(stack: Stack) -> None:
    live = sample_names(from_text(stack.metrics_text()))
    unknown = {
        where: promql_metric_names(grafana_to_promql(expression)) - live
        for where, expression in dashboard_queries(DASHBOARD)
    }

    assert {} == {where: names for where, names in unknown.items() if names}


def test_prometheus_scrapes_ckptd_and_evaluates_every_rule(stack: Stack) -> None:
    successes = 'ckptd_checkpoint_successes_total{job="ckptd",target="it"} >= 2'
    wait_until("two checkpoints seen by Prometheus", lambda: stack.query(successes), 60, stack)

    [up] = stack.query('up{job="ckptd"}')
    [interval] = stack.query('ckptd_expected_interval_seconds{target="it"}')
    [engine] = stack.query("ckptd_engine_up")
    [build] = stack.query("ckptd_build_info")
    groups = wait_until(
        "every rule evaluated once",
        lambda: [g for g in stack.api("/api/v1/rules")["groups"] if _all_evaluated(g)],
        30,
        stack,
    )
    rules = [rule for group in groups for rule in group["rules"]]
    shipped = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]

    assert "1" == up["value"][1]
    assert str(INTERVAL_S) == interval["value"][1]
    assert stack.container == interval["metric"]["container"]
    assert "1" == engine["value"][1]
    assert build["metric"]["version"]
    assert len(shipped) == len(rules)
    assert [] == [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"]
    assert [] == stack.alerts("CkptdCheckpointStale"), "stale while checkpoints succeed"
    assert [] == stack.alerts("CkptdEngineDown")


def test_every_dashboard_query_runs_on_prometheus(stack: Stack) -> None:
    answers = {
        where: stack.query(grafana_to_promql(expression, window="1m", value=".*"))
        for where, expression in dashboard_queries(DASHBOARD)
    }
    # The panels a healthy target on Docker's engine fills (no freeze figures, no failures).
    expected = [
        "panel 'Success rate over the range' A",
        "panel 'Time since last good checkpoint vs. stale threshold' A",
        "panel 'Checkpoint duration (p50, p90, p99 over $window)' A",
        "panel 'Last checkpoint size and retained bytes' B",
        "variable $target",
    ]

    assert [] == [where for where in expected if not answers[where]]
    [ratio] = answers["panel 'Success rate over the range' A"]
    assert {"target": "it"} == ratio["metric"]


def _all_evaluated(group: dict[str, Any]) -> bool:
    return all(rule["health"] != "unknown" for rule in group["rules"])


def test_a_stopped_container_goes_stale(stack: Stack) -> None:
    docker("stop", "-t", "5", stack.container)
    stopped = time.time()

    [stale] = wait_until(
        "CkptdCheckpointStale pending or firing",
        lambda: stack.alerts("CkptdCheckpointStale"),
        4 * INTERVAL_S + 20,
        stack,
    )
    failing = wait_until(
        "CkptdCheckpointFailing pending or firing",
        lambda: stack.alerts("CkptdCheckpointFailing"),
        20,
        stack,
    )
    last_success = stack.query('ckptd_last_success_timestamp_seconds{target="it"}')

    assert stale["state"] in ("pending", "firing")
    assert "it" == stale["labels"]["target"]
    assert stack.container == stale["labels"]["container"]
    assert "critical" == stale["labels"]["severity"]
    assert float(last_success[0]["value"][1]) < stopped
    assert "it" == failing[0]["labels"]["target"]
