"""The retention part of the policy: every rule, spans, sizes, budgets, and their mistakes."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ckptd.errors import PolicyError
from ckptd.policy import load_policy, parse_retention, summarize_policy
from ckptd.sizes import format_size, parse_size
from ckptd.spans import Span, format_span, parse_span

MINIMAL = """
targets:
  - name: solver
    container: cpp-solver
    schedule: {every: 5m}
"""
UTC_ZONE = ZoneInfo("UTC")


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_policy(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", Span(seconds=30)),
        ("90m", Span(minutes=90)),
        ("36h", Span(hours=36)),
        ("7d", Span(days=7)),
        ("2w", Span(weeks=2)),
        ("3mo", Span(months=3)),
        ("1y", Span(years=1)),
        ("1y2mo3d", Span(years=1, months=2, days=3)),
        ("1d12h30m", Span(days=1, hours=12, minutes=30)),
        (3600, Span(seconds=3600)),
    ],
)
def test_spans(text: str | int, expected: Span) -> None:
    assert expected == parse_span(text)
    assert str(text) == format_span(expected) or isinstance(text, int)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1y2m", "write months as 'mo'"),
        ("3 months", "not a span"),
        ("2d1y", "not a span"),
        ("0d", "not longer than zero"),
        (0, "not longer than zero"),
        ("", "not a span"),
        (1.5, "expected a span"),
        (True, "expected a span"),
    ],
)
def test_bad_spans(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_span(text)


@pytest.mark.parametrize(
    ("moment", "span", "expected"),
    [
        # Calendar months: March 31st less a month rolls over past February's end.
        (datetime(2026, 3, 31, tzinfo=UTC), "1mo", datetime(2026, 3, 3, tzinfo=UTC)),
        (datetime(2024, 3, 31, tzinfo=UTC), "1mo", datetime(2024, 3, 2, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "1y", datetime(2023, 3, 1, tzinfo=UTC)),
        (datetime(2026, 1, 15, 6, tzinfo=UTC), "1y2mo3d3h", datetime(2024, 11, 12, 3, tzinfo=UTC)),
        (datetime(2026, 1, 15, tzinfo=UTC), "2w", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_span_before_uses_the_calendar(moment: datetime, span: str, expected: datetime) -> None:
    assert expected == parse_span(span).before(moment, UTC_ZONE)


def test_a_span_past_year_one_reaches_everything() -> None:
    assert None is parse_span("9999y").before(datetime(2016, 1, 1, tzinfo=UTC), UTC_ZONE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20GiB", 20 * 1024**3),
        ("1.5TB", 1_500_000_000_000),
        ("500 MB", 500_000_000),
        ("512KiB", 512 * 1024),
        ("100B", 100),
        ("7", 7),
        (1048576, 1048576),
        ("2gib", 2 * 1024**3),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert expected == parse_size(text)


@pytest.mark.parametrize("text", ["20XB", "GiB", "-5", "1,5GB", 2.5, True, -1])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert ["?", "100B", "1.5KiB", "20GiB"] == [
        format_size(None),
        format_size(100),
        format_size(1536),
        format_size(20 * 1024**3),
    ]


def test_every_rule_loads_from_a_policy(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.indent(
        textwrap.dedent(
            """
            retention:
              keep_last: 3
              keep_minutely: 10
              keep_hourly: 24
              keep_daily: 7
              keep_weekly: 4
              keep_monthly: unlimited
              keep_yearly: 2
              keep_within: 2h
              keep_within_hourly: 1d
              keep_within_daily: 1w
              keep_within_weekly: 1mo
              keep_within_monthly: 1y
              keep_within_yearly: 10y
              timezone: Europe/Berlin
              max_total_size: 20GiB
              min_free_disk: 10GiB
            """
        ),
        "    ",
    )

    policy = load(tmp_path, "daemon: {min_free_disk: 5GB}\n" + text)

    retention = policy.targets[0].retention  # type: ignore[attr-defined]
    assert "unlimited" == retention.keep_monthly
    assert Span(months=1) == retention.keep_within_weekly
    assert 20 * 1024**3 == retention.max_total_size
    assert 5_000_000_000 == policy.daemon.min_free_disk  # type: ignore[attr-defined]
    assert retention.describe().startswith("keep last 3, minutely 10, hourly 24, daily 7")


@pytest.mark.parametrize(
    ("retention", "location", "message"),
    [
        ("{keep_daily: 0}", "targets[0].retention.keep_daily", "greater than or equal to 1"),
        ("{keep_hourly: all}", "targets[0].retention.keep_hourly", "'unlimited'"),
        ("{keep_weekly: 2.5}", "targets[0].retention.keep_weekly", "whole number"),
        ("{keep_within: 1y2m}", "targets[0].retention.keep_within", "write months as 'mo'"),
        ("{keep_within_daily: 7 days}", "targets[0].retention.keep_within_daily", "not a span"),
        ("{timezone: Mars/Base}", "targets[0].retention.timezone", "unknown time zone"),
        ("{max_total_size: 20G}", "targets[0].retention.max_total_size", "not a size"),
        ("{min_free_disk: lots}", "targets[0].retention.min_free_disk", "not a size"),
    ],
)
def test_bad_retention_values_name_their_key(
    tmp_path: Path, retention: str, location: str, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, MINIMAL + f"    retention: {retention}\n")

    problems = caught.value.problems
    assert [location] == [problem.location for problem in problems]
    assert message in problems[0].message
    assert 5 == problems[0].line


def test_bad_daemon_min_free_disk_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, "daemon: {min_free_disk: 10 gigs}\n" + MINIMAL)

    assert ["daemon.min_free_disk"] == [problem.location for problem in caught.value.problems]


def test_every_bad_retention_value_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_retention({"keep_daily": -1, "keep_within": "soon", "max_total_size": "big"})

    assert 3 == len(caught.value.problems)


def test_the_summary_names_the_disk_budgets(tmp_path: Path) -> None:
    text = "daemon: {min_free_disk: 5GiB}\n" + MINIMAL + "    retention: {max_total_size: 2GiB}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")

    summary = summarize_policy(load_policy(path), path)

    assert "keep 5GiB disk free, engine docker" in summary.splitlines()[2]
    assert "keep all, at most 2GiB, engine docker" in " ".join(summary.split())
