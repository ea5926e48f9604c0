"""Which checkpoints to keep: restic's `forget` rules, ckptd's budgets and a safety floor.

`plan_retention` is a pure function: it reads checkpoint records, the retention settings and the
current time, does no I/O, and explains every decision. Tools and tests outside ckptd may call
it; the daemon and `ckptd prune` use it the same way.

The rules, combined with OR (a checkpoint is kept when any rule keeps it):

- ``keep_last: N`` keeps the N newest checkpoints.
- ``keep_minutely``, ``keep_hourly``, ``keep_daily``, ``keep_weekly`` (ISO weeks, from Monday),
  ``keep_monthly``, ``keep_yearly: N`` keep the newest checkpoint of each of the N newest
  calendar buckets that hold one. N may be ``unlimited``. When a rule still has count left at
  the oldest checkpoint, that one is kept too ("oldest daily"), so the history reaches as far
  back as it can.
- ``keep_within: SPAN`` keeps every checkpoint less than SPAN older than the newest one (counted
  from the newest checkpoint, not from now, so a stopped schedule does not empty the target).
- ``keep_within_hourly`` ... ``keep_within_yearly: SPAN`` keep the newest checkpoint of each
  bucket within SPAN of the newest one, and the oldest within the span.

Buckets are read in ``timezone`` (UTC by default). An hour that repeats when daylight saving ends
counts as two hours. With no rule at all, everything is kept. The rules see only the target's
finished checkpoints dated up to ``now``; one dated later (the clock went back) is kept by the
floor and joins the rules once its time has come, so a clock jump never costs a checkpoint made
on the real timeline (restic, which has no floor, would count it).

Then the budget: with ``max_total_size`` the oldest kept checkpoints are deleted until the
target's checkpoints fit. Whatever the rules and the budget say, the floor is never deleted: the
newest good checkpoint, pinned ones, ones still being written, ones dated in the future (the
clock went back), other targets' and those ckptd did not make. A budget the floor does not let
ckptd meet is reported in ``RetentionPlan.unmet``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from ckptd.policy import UNLIMITED, Retention, parse_retention
from ckptd.sizes import format_size
from ckptd.spans import Span

NO_RULES = "no rules"
NOT_KEPT = "no rule keeps it"
OVER_SIZE_BUDGET = "over size budget"
NEWEST_GOOD = "newest good"
PINNED = "pinned"
NEWEST_VERIFIED = "newest verified"
BEING_WRITTEN = "being written"
FUTURE_DATED = "future-dated"
OTHER_TARGET = "other target"
NOT_CKPTD = "not ckptd's"

Bucketer = Callable[[datetime], Hashable]


class Origin(StrEnum):
    """Whose checkpoint a record is, as far as the target being planned is concerned."""

    TARGET = "target"
    OTHER_TARGET = "other_target"
    FOREIGN = "foreign"


# Enum members looked up once: class attribute access on an Enum is slow in a 100,000-item loop.
_OWN = Origin.TARGET
_AGE = attrgetter("created", "name")


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint as retention sees it.

    ``size_bytes`` is None when unknown (counted as 0 against a size budget). ``origin`` says
    whether it is the planned target's own, another target's, or not made by ckptd.
    """

    name: str
    created: datetime
    size_bytes: int | None = None
    pinned: bool = False
    in_progress: bool = False
    origin: Origin = Origin.TARGET
    # The newest checkpoint of the container whose restore drill passed.
    verified: bool = False
    # The target keeps a store and this checkpoint has no copy there (its store step failed),
    # so a restore from the store cannot use it: it is never the newest good one.
    unstored: bool = False


@dataclass(frozen=True)
class Decision:
    """What happens to one checkpoint and why.

    ``reasons`` explain the outcome ("daily", "newest good"; or "no rule keeps it", "over size
    budget"); ``rules`` are the rules that matched it, in restic's order, even when a budget
    then deleted it.
    """

    record: CheckpointRecord
    keep: bool
    reasons: tuple[str, ...]
    rules: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Return the checkpoint's name."""
        return self.record.name


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome of planning, newest first in each list."""

    keep: list[Decision] = field(default_factory=list)
    delete: list[Decision] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)

    def decisions(self) -> list[Decision]:
        """Return every decision, newest checkpoint first."""
        return sorted(self.keep + self.delete, key=lambda d: _AGE(d.record), reverse=True)

    def kept_bytes(self) -> int:
        """Return the bytes of the target's own checkpoints that the plan keeps."""
        return sum(_size(d.record) for d in self.keep if d.record.origin is _OWN)


def plan_retention(
    records: Iterable[CheckpointRecord],
    settings: Mapping[str, Any] | Retention,
    now: datetime,
) -> RetentionPlan:
    """Return which of `records` to keep and which to delete, each with its reasons.

    `settings` is the target's ``retention:`` mapping as a policy file writes it (e.g.
    ``{"keep_daily": 7, "keep_within": "2d", "max_total_size": "20GiB"}``) or a validated
    `Retention`; `now` (timezone-aware) tells which checkpoints are dated in the future. The
    result does not depend on the order of `records`. Raises PolicyError when `settings` is
    not valid retention.
    """
    retention = settings if isinstance(settings, Retention) else parse_retention(settings)
    # Newest first; equal times in name order, so any input order plans alike.
    ordered = sorted(records, key=_AGE, reverse=True)
    # A checkpoint dated after `now` (the clock went back) stays out of the rules until its time
    # comes: it would take a bucket or a keep_last place from one made on the real timeline.
    subjects = [
        (r.created.timestamp(), r)
        for r in ordered
        if r.origin is _OWN and not r.in_progress and r.created <= now
    ]
    matches = _match_rules(subjects, retention)
    stored = [record for _, record in subjects if not record.unstored]
    newest_good = stored[0] if stored else (subjects[0][1] if subjects else None)

    keep_all = not retention.has_rules()
    decisions: list[Decision] = []

    for record in ordered:
        plain = record.origin is _OWN and not (
            record.pinned or record.in_progress or record.verified
        )

        if plain and record is not newest_good and record.created <= now:
            floor: tuple[str, ...] = ()
        else:
            floor = _floor_reasons(record, now, record is newest_good)

        rules = matches.get(id(record), ())

        if keep_all and record.origin is _OWN and not record.in_progress:
            rules = (NO_RULES,)

        keep = bool(rules or floor)
        reasons = rules + floor if keep else (NOT_KEPT,)
        decisions.append(Decision(record, keep, reasons, rules))

    unmet: list[str] = []

    if retention.max_total_size is not None:
        decisions, unmet = _fit_size_budget(decisions, retention.max_total_size)

    plan = RetentionPlan(unmet=unmet)

    for decision in decisions:
        (plan.keep if decision.keep else plan.delete).append(decision)

    return plan


def is_protected(decision: Decision) -> bool:
    """Return True when the floor keeps this checkpoint whatever any rule or budget says."""
    floor = {
        NEWEST_GOOD,
        NEWEST_VERIFIED,
        PINNED,
        BEING_WRITTEN,
        FUTURE_DATED,
        OTHER_TARGET,
        NOT_CKPTD,
    }
    return bool(floor.intersection(decision.reasons))


def _size(record: CheckpointRecord) -> int:
    return record.size_bytes or 0


def _floor_reasons(record: CheckpointRecord, now: datetime, newest_good: bool) -> tuple[str, ...]:
    """Return why the floor keeps `record`, if it does."""
    if record.origin is Origin.FOREIGN:
        return (NOT_CKPTD,)

    if record.origin is Origin.OTHER_TARGET:
        return (OTHER_TARGET,)

    reasons: list[str] = []

    if newest_good:
        reasons.append(NEWEST_GOOD)

    if record.pinned:
        reasons.append(PINNED)

    if record.verified:
        reasons.append(NEWEST_VERIFIED)

    if record.in_progress:
        reasons.append(BEING_WRITTEN)

    if record.created > now:
        reasons.append(FUTURE_DATED)

    return tuple(reasons)


def _fit_size_budget(decisions: list[Decision], budget: int) -> tuple[list[Decision], list[str]]:
    """Delete the oldest kept, unprotected checkpoints of the target until the rest fit."""
    total = sum(_size(d.record) for d in decisions if d.keep and d.record.origin is _OWN)
    fitted = list(decisions)

    for index in range(len(fitted) - 1, -1, -1):
        if total <= budget:
            break

        decision = fitted[index]

        if decision.keep and decision.record.origin is _OWN and not is_protected(decision):
            fitted[index] = Decision(decision.record, False, (OVER_SIZE_BUDGET,), decision.rules)
            total -= _size(decision.record)

    unmet: list[str] = []

    if total > budget:
        unmet.append(
            f"max_total_size {format_size(budget)}: {format_size(total)} kept, "
            "the rest is protected"
        )

    return fitted, unmet


# --- the rules, as restic's forget applies them -----------------------------------------------


def _minutely(t: datetime) -> Hashable:
    # The UTC offset tells apart the two runs of the hour repeated when daylight saving ends.
    return (t.year, t.month, t.day, t.hour, t.minute, t.utcoffset())


def _hourly(t: datetime) -> Hashable:
    return (t.year, t.month, t.day, t.hour, t.utcoffset())


def _daily(t: datetime) -> Hashable:
    return (t.year, t.month, t.day)


def _weekly(t: datetime) -> Hashable:
    year, week, _ = t.isocalendar()
    return (year, week)


def _monthly(t: datetime) -> Hashable:
    return (t.year, t.month)


def _yearly(t: datetime) -> Hashable:
    return t.year


# Each bucket kind and the bucket of a time, read on the local calendar of the retention zone.
BUCKETS: dict[str, Bucketer] = {
    "minutely": _minutely,
    "hourly": _hourly,
    "daily": _daily,
    "weekly": _weekly,
    "monthly": _monthly,
    "yearly": _yearly,
}


@dataclass
class _Rule:
    """One bucket rule while it walks the checkpoints, newest first.

    A count rule (``keep_daily: N``) has ``left`` buckets to fill, None when unlimited; a span
    rule (``keep_within_daily: SPAN``) has a ``cutoff`` instead and ends at the first checkpoint
    outside the span (every later one is older). ``keep_last`` is a count rule whose bucket is
    the checkpoint itself.
    """

    label: str
    bucket: Bucketer | None
    left: int | None = None
    # The span's start as a Unix time; -inf when the span reaches back past every checkpoint.
    cutoff: float = -math.inf
    spanned: bool = False
    previous: Hashable = None

    def offer(self, index: int, local: datetime, oldest: bool) -> str | None:
        """Return the reason this rule keeps the checkpoint at `index` (made at `local`)."""
        value = index if self.bucket is None else self.bucket(local)

        if value == self.previous and not oldest:
            return None

        reason = f"oldest {self.label}" if value == self.previous else self.label
        self.previous = value

        if self.left is not None:
            self.left -= 1

        return reason

    def done(self, moment: float) -> bool:
        """Return True once this rule keeps nothing from Unix time `moment` on, going back."""
        return moment <= self.cutoff if self.spanned else self.left == 0


def _match_rules(
    subjects: Sequence[tuple[float, CheckpointRecord]], retention: Retention
) -> dict[int, tuple[str, ...]]:
    """Return, by id() of each record the rules keep, the rules that keep it, restic's way.

    `subjects` are the target's finished checkpoints with their Unix times, newest first.
    Rules are offered each checkpoint in restic's order: keep_within, the count rules from last
    to yearly, then the span rules from hourly to yearly; a rule that can keep nothing more
    drops out early.
    """
    timezone = ZoneInfo(retention.timezone)
    latest = subjects[0][1].created if subjects else None

    def cutoff(span: Span) -> float:
        start = None if latest is None else span.before(latest, timezone)
        return -math.inf if start is None else start.timestamp()

    rules: list[_Rule] = []

    if retention.keep_within is not None:
        # Every checkpoint in the span: a rule whose every checkpoint is its own bucket.
        label = f"within {retention.keep_within}"
        rules.append(_Rule(label, None, cutoff=cutoff(retention.keep_within), spanned=True))

    for kind, bucket in (("last", None), *BUCKETS.items()):
        count = _count(getattr(retention, f"keep_{kind}"))

        if count != 0:
            rules.append(_Rule(kind, bucket, left=count))

    for kind, bucket in BUCKETS.items():
        span = getattr(retention, f"keep_within_{kind}", None)

        if span is not None:
            rules.append(_Rule(f"{kind} within {span}", bucket, cutoff=cutoff(span), spanned=True))

    matches: dict[int, tuple[str, ...]] = {}
    last_index = len(subjects) - 1
    # Rules drop out when a span ends (at `horizon`, the latest of their starts) or a count
    # runs out; until then the list is left alone, which keeps 100,000 checkpoints fast.
    horizon, exhausted = math.inf, True

    for index, (moment, record) in enumerate(subjects):
        if exhausted or moment <= horizon:
            rules = [rule for rule in rules if not rule.done(moment)]
            horizon = max((rule.cutoff for rule in rules if rule.spanned), default=-math.inf)
            exhausted = False

            if not rules:
                break

        local = record.created.astimezone(timezone)
        oldest = index == last_index
        reasons: list[str] = []

        for rule in rules:
            reason = rule.offer(index, local, oldest)

            if reason is not None:
                reasons.append(reason)
                exhausted = exhausted or rule.left == 0

        if reasons:
            matches[id(record)] = tuple(reasons)

    return matches


def _count(value: int | str | None) -> int | None:
    """Return a rule's count: 0 when the rule is off, None when unlimited."""
    if value is None:
        return 0

    if value == UNLIMITED:
        return None

    return int(value)
