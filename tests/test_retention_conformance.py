"""restic's own forget-policy table, as data: ckptd keeps the same checkpoints for the same reasons.

The cases and their licence are in tests/conformance/restic-forget/. restic words its reasons
"daily snapshot" and writes months as "m"; ckptd says "daily" and "mo" (its "m" is minutes).
`ckptd_wording` does only that translation, so every other word of restic's reasons is compared.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ckptd.retention import CheckpointRecord, plan_retention

DATA = Path(__file__).resolve().parent / "conformance" / "restic-forget" / "cases.json"
TABLE = json.loads(DATA.read_text(encoding="utf-8"))
UNITS = (("years", "y"), ("months", "mo"), ("days", "d"), ("hours", "h"))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def records() -> list[CheckpointRecord]:
    """Return the table's checkpoints, named by position (some times repeat)."""
    return [
        CheckpointRecord(f"c{index:03d}", parse_time(text))
        for index, text in enumerate(TABLE["checkpoints"])
    ]


def ckptd_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Return the case's rules as a policy file writes them: spans as text such as "1y2mo"."""
    written: dict[str, Any] = {}
    for key, value in rules.items():
        if isinstance(value, dict):
            value = "".join(f"{value[part]}{unit}" for part, unit in UNITS if value[part])

        written[key] = value

    return written


def ckptd_wording(reason: str) -> str:
    """Return restic's reason in ckptd's words: no " snapshot", months as "mo"."""
    reason = reason.removesuffix(" snapshot")
    return re.sub(r"(?<=[0-9])m(?![a-z])", "mo", reason)


NOW = max(parse_time(text) for text in TABLE["checkpoints"]) + timedelta(days=1)


@pytest.mark.parametrize("case", TABLE["cases"], ids=[case["id"] for case in TABLE["cases"]])
def test_restic_case(case: dict[str, Any]) -> None:
    plan = plan_retention(records(), ckptd_rules(case["rules"]), NOW)

    kept = [decision.record.created for decision in plan.keep]
    assert [parse_time(text) for text in case["expected_keep"]] == kept
    expected_reasons = [
        (parse_time(entry["time"]), [ckptd_wording(match) for match in entry["matches"]])
        for entry in case["expected_reasons"]
    ]
    assert expected_reasons == [(d.record.created, list(d.rules)) for d in plan.keep]


def test_the_table_is_complete() -> None:
    assert 103 == len(TABLE["checkpoints"])
    assert 36 == len(TABLE["cases"])


def test_wording_translation() -> None:
    assert "oldest yearly within 9999y" == ckptd_wording("oldest yearly within 9999y")
    assert "within 1y2mo3d3h" == ckptd_wording("within 1y2m3d3h")
    assert "last" == ckptd_wording("last snapshot")
