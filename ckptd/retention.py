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
counts as two hours. With no rule at all, everything is kept.

Then the budget: with ``max_total_size`` the oldest kept checkpoints are deleted until the
target's checkpoints fit. Whatever the rules and the budget say, the floor is never deleted: the
newest good checkpoint, pinned ones, ones still being written, ones dated in the future (the
clock went back), other targets' and those ckptd did not make. A budget the floor does not let
ckptd meet is reported in ``RetentionPlan.unmet``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
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
        return sorted(self.keep + self.delete, key=lambda d: _age_key(d.record), reverse=True)

    def kept_bytes(self) -> int:
        """Return the bytes of the target's own checkpoints that the plan keeps."""
        return sum(_size(d.record) for d in self.keep if d.record.origin is Origin.TARGET)


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
    ordered = sorted(records, key=_age_key, reverse=True)
    subjects = [r for r in ordered if r.origin is Origin.TARGET and not r.in_progress]
    matches = _match_rules(subjects, retention, now)
    newest_good = next((r for r in subjects if r.created <= now), None)

    decisions: list[Decision] = []
    for record in ordered:
        floor = _floor_reasons(record, now, record is newest_good)
        rules = tuple(matches.get(id(record), ()))
        if record.origin is Origin.TARGET and not record.in_progress and not retention.has_rules():
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
    floor = {NEWEST_GOOD, PINNED, BEING_WRITTEN, FUTURE_DATED, OTHER_TARGET, NOT_CKPTD}
    return bool(floor.intersection(decision.reasons))


def _age_key(record: CheckpointRecord) -> tuple[float, str]:
    """Return a sort key for oldest first; ties broken by name, so any input order plans alike."""
    return (record.created.timestamp(), record.name)


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

    if record.in_progress:
        reasons.append(BEING_WRITTEN)

    if record.created > now:
        reasons.append(FUTURE_DATED)

    return tuple(reasons)


def _fit_size_budget(decisions: list[Decision], budget: int) -> tuple[list[Decision], list[str]]:
    """Delete the oldest kept, unprotected checkpoints of the target until the rest fit."""
    total = sum(_size(d.record) for d in decisions if d.keep and d.record.origin is Origin.TARGET)
    fitted = list(decisions)

    for index in range(len(fitted) - 1, -1, -1):
        if total <= budget:
            break

        decision = fitted[index]
        if decision.keep and decision.record.origin is Origin.TARGET and not is_protected(decision):
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


def _bucketers(timezone: ZoneInfo) -> dict[str, Bucketer]:
    """Return, per bucket kind, a function giving the calendar bucket of a time in `timezone`.

    Minutes and hours carry the UTC offset, so the hour repeated when daylight saving ends
    makes two buckets; days, weeks, months and years are the local calendar's.
    """

    def local(moment: datetime) -> datetime:
        return moment.astimezone(timezone)

    def minutely(moment: datetime) -> Hashable:
        t = local(moment)
        return (t.year, t.month, t.day, t.hour, t.minute, t.utcoffset())

    def hourly(moment: datetime) -> Hashable:
        t = local(moment)
        return (t.year, t.month, t.day, t.hour, t.utcoffset())

    def daily(moment: datetime) -> Hashable:
        t = local(moment)
        return (t.year, t.month, t.day)

    def weekly(moment: datetime) -> Hashable:
        year, week, _ = local(moment).isocalendar()
        return (year, week)

    def monthly(moment: datetime) -> Hashable:
        t = local(moment)
        return (t.year, t.month)

    def yearly(moment: datetime) -> Hashable:
        return local(moment).year

    return {
        "minutely": minutely,
        "hourly": hourly,
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
        "yearly": yearly,
    }


@dataclass
class _CountRule:
    """A keep_<kind>: N rule while it walks the checkpoints, newest first."""

    label: str
    bucket: Callable[[int, datetime], Hashable]
    left: int | None  # None: unlimited
    previous: Hashable = None

    def offer(self, index: int, moment: datetime, oldest: bool) -> str | None:
        """Return the reason this rule keeps the checkpoint at `index`, or None."""
        if self.left == 0:
            return None

        value = self.bucket(index, moment)
        if value == self.previous and not oldest:
            return None

        reason = f"oldest {self.label}" if value == self.previous else self.label
        self.previous = value
        if self.left is not None:
            self.left -= 1

        return reason


@dataclass
class _WithinRule:
    """A keep_within_<kind>: SPAN rule while it walks the checkpoints, newest first."""

    label: str
    bucket: Bucketer
    cutoff: datetime | None  # None: the span reaches back past every checkpoint
    previous: Hashable = None

    def offer(self, moment: datetime, oldest: bool) -> str | None:
        """Return the reason this rule keeps a checkpoint made at `moment`, or None."""
        if self.cutoff is not None and moment <= self.cutoff:
            return None

        value = self.bucket(moment)
        if value == self.previous and not oldest:
            return None

        reason = f"oldest {self.label}" if value == self.previous else self.label
        self.previous = value
        return reason


def _match_rules(
    subjects: Sequence[CheckpointRecord], retention: Retention, now: datetime
) -> dict[int, list[str]]:
    """Return, by id() of each record the rules keep, the rules that keep it, restic's way.

    `subjects` are the target's finished checkpoints, newest first.
    """
    timezone = ZoneInfo(retention.timezone)
    bucketers = _bucketers(timezone)
    latest = next((r.created for r in subjects if r.created <= now), None)

    def cutoff(span: Span) -> datetime | None:
        return None if latest is None else span.before(latest, timezone)

    counts = [_CountRule("last", lambda index, _: index, _count(retention.keep_last))]
    counts += [
        _CountRule(kind, _ignoring_index(bucket), _count(getattr(retention, f"keep_{kind}")))
        for kind, bucket in bucketers.items()
        if getattr(retention, f"keep_{kind}") is not None
    ]
    counts = [rule for rule in counts if rule.left != 0]
    withins = [
        _WithinRule(f"{kind} within {span}", bucket, cutoff(span))
        for kind, bucket in bucketers.items()
        if (span := getattr(retention, f"keep_within_{kind}", None)) is not None
    ]
    within_all = None if retention.keep_within is None else cutoff(retention.keep_within)

    matches: dict[int, list[str]] = {}
    last_index = len(subjects) - 1
    for index, record in enumerate(subjects):
        reasons: list[str] = []
        if retention.keep_within is not None and (
            within_all is None or record.created > within_all
        ):
            reasons.append(f"within {retention.keep_within}")

        oldest = index == last_index
        for count_rule in counts:
            reason = count_rule.offer(index, record.created, oldest)
            if reason is not None:
                reasons.append(reason)

        for within_rule in withins:
            reason = within_rule.offer(record.created, oldest)
            if reason is not None:
                reasons.append(reason)

        if reasons:
            matches[id(record)] = reasons

    return matches


def _count(value: int | str | None) -> int | None:
    """Return a rule's count: 0 when the rule is off, None when unlimited."""
    if value is None:
        return 0

    if value == UNLIMITED:
        return None

    return int(value)


def _ignoring_index(bucket: Bucketer) -> Callable[[int, datetime], Hashable]:
    return lambda _, moment: bucket(moment)
