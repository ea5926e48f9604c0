"""The README's metrics table names exactly the metrics ckptd's registry serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ckptd.metrics import Metrics
from tests.metric_names import exported, from_registry, readme_rows, table_problems


def test_readme_metrics_table_matches_the_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry).declare([("solver", "cpp-solver")])

    problems = table_problems(readme_rows(), exported(from_registry(registry)))

    assert [] == problems, "\n".join(problems)
