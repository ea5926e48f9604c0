"""Calendar spans for retention: "36h", "7d", "3mo", "1y2mo3d", counted back on the calendar.

A schedule interval is a fixed number of seconds; a retention span is not. "1mo" before March 31st
is a different number of days than before May 31st, and "1d" across a daylight-saving change is
23 or 25 hours. Years, months, weeks and days move the wall-clock date in the retention time
zone; hours, minutes and seconds are then taken off as elapsed time. A day of the month that does
not exist rolls over into the next month (March 31st less one month is March 2nd, or 3rd in a
non-leap year), which is how restic, whose `forget` rules ckptd follows, counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

SPAN_FORMS = (
    "numbers with the units y, mo, w, d, h, m, s, largest first "
    "(36h, 7d, 2w, 3mo, 1y, 1y2mo3d); 'mo' is months, 'm' is minutes"
)
_SPAN_RE = re.compile(
    r"(?:(?P<years>[0-9]+)y)?(?:(?P<months>[0-9]+)mo)?(?:(?P<weeks>[0-9]+)w)?"
    r"(?:(?P<days>[0-9]+)d)?(?:(?P<hours>[0-9]+)h)?(?:(?P<minutes>[0-9]+)m)?"
    r"(?:(?P<seconds>[0-9]+)s)?"
)
_UNITS = (
    ("years", "y"),
    ("months", "mo"),
    ("weeks", "w"),
    ("days", "d"),
    ("hours", "h"),
    ("minutes", "m"),
    ("seconds", "s"),
)
# Beyond this many years back there is no date to compare with: the span reaches the beginning.
_MAX_COUNT = 10**6


@dataclass(frozen=True)
class Span:
    """A stretch of calendar time: whole years, months, weeks, days, hours, minutes, seconds."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def __str__(self) -> str:
        return format_span(self)

    def is_zero(self) -> bool:
        """Return True when every part of the span is zero."""
        return not any(getattr(self, field) for field, _ in _UNITS)

    def before(self, moment: datetime, timezone: ZoneInfo) -> datetime | None:
        """Return the instant this span before `moment`, reading the calendar in `timezone`.

        Returns None when that instant is before the first representable date (the span
        reaches back past year 1), so every time counts as within it.
        """
        local = moment.astimezone(timezone)
        month_index = local.year * 12 + (local.month - 1) - self.years * 12 - self.months
        year, month = divmod(month_index, 12)

        if not 1 <= year <= 9999:
            return None

        try:
            # Day 1 always exists; adding the days then rolls an overflowing date forward.
            first = local.replace(year=year, month=month + 1, day=1)
            wall = first + timedelta(days=local.day - 1 - self.days - 7 * self.weeks)
            elapsed = timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
            return wall.astimezone(UTC) - elapsed
        except OverflowError:
            return None


def parse_span(text: object) -> Span:
    """Return the span `text` names, e.g. "1y2mo3d" or "36h"; whole seconds as an int.

    Raises ValueError naming the accepted forms when `text` is none of them or is zero.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"expected a span: {SPAN_FORMS}")

    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"{text} is not longer than zero; expected {SPAN_FORMS}")

        return Span(seconds=text)

    stripped = text.strip()
    match = _SPAN_RE.fullmatch(stripped)

    if not stripped or match is None:
        raise ValueError(f"{text!r} is not a span; expected {SPAN_FORMS}")

    parts = {unit: int(count) for unit, count in match.groupdict().items() if count is not None}

    if any(count > _MAX_COUNT for count in parts.values()):
        raise ValueError(f"{text!r} is too long a span")

    span = Span(**parts)

    if span.minutes and (span.years or span.months):
        # Nobody keeps "a year and two minutes"; this is restic's notation, where m is months.
        raise ValueError(f"{text!r} adds minutes to years or months; write months as 'mo'")

    if span.is_zero():
        raise ValueError(f"{text!r} is not longer than zero")

    return span


def format_span(span: Span) -> str:
    """Return `span` in the policy's notation, e.g. "1y2mo3d"; "0s" for an empty span."""
    text = "".join(
        f"{getattr(span, field)}{unit}" for field, unit in _UNITS if getattr(span, field)
    )
    return text or "0s"
