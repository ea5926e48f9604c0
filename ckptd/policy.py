"""The checkpoint policy: which containers to checkpoint, when, and how many checkpoints to keep.

The policy is one YAML file checked against the pydantic models below. `load_policy` turns every
mistake in it into a `Problem` carrying a key path (`targets[1].schedule.every`) and, where it can
find one, the line of that key, and reports them all at once.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ckptd.errors import PolicyError, Problem, UsageError, yaml_value
from ckptd.naming import CONTAINER_REF
from ckptd.policyfile import expansion_problem, file_mode_problem, text_shape_problem
from ckptd.sizes import format_size, parse_size
from ckptd.spans import Span, parse_span

Loc = tuple[str | int, ...]

DURATION_FORMS = (
    "whole seconds (90) or numbers with the units w, d, h, m, s, largest first "
    "(30s, 90m, 36h, 7d, 2w, 1h30m)"
)
_DURATION_RE = re.compile(
    r"(?:(?P<weeks>[0-9]+)w)?(?:(?P<days>[0-9]+)d)?(?:(?P<hours>[0-9]+)h)?"
    r"(?:(?P<minutes>[0-9]+)m)?(?:(?P<seconds>[0-9]+)s)?"
)
_SECONDS_RE = re.compile(r"[0-9]+")
_DURATION_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# Checkpoint names are ckptd-<target>-<timestamp>, so a target name must not contain "-".
_TARGET_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.]{0,39}")
_HOST_RE = re.compile(r"[a-zA-Z0-9.\-]+")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_CRON_FIELDS = "minute hour day-of-month month day-of-week"
_DUPLICATE_NAME = "duplicate_target_name"
# docker: the Engine API's checkpoint call; runc: runc called directly (see ckptd/runc.py).
EngineName = Literal["docker", "runc"]
# A retention count that keeps one checkpoint per bucket for as far back as they go.
UNLIMITED = "unlimited"


def parse_duration(text: str | int) -> timedelta:
    """Return the duration `text` names: whole seconds, or a string such as "1h30m".

    Raises ValueError naming the accepted forms when `text` is none of them or is negative.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"{yaml_value(text)} is not a duration; expected {DURATION_FORMS}")

    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is negative; expected {DURATION_FORMS}")

        return _timedelta(text, seconds=text)

    stripped = text.strip()
    if _SECONDS_RE.fullmatch(stripped):
        return _timedelta(text, seconds=int(stripped))

    match = _DURATION_RE.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(f"{text!r} is not a duration; expected {DURATION_FORMS}")

    parts = {unit: int(count) for unit, count in match.groupdict().items() if count is not None}
    return _timedelta(text, **parts)


def format_duration(duration: timedelta) -> str:
    """Return `duration` in the policy's own notation, e.g. "1h30m"; "0s" for zero."""
    remaining = int(duration.total_seconds())
    parts: list[str] = []
    for unit, seconds in _DURATION_UNITS:
        count, remaining = divmod(remaining, seconds)
        if count:
            parts.append(f"{count}{unit}")

    return "".join(parts) or "0s"


def _timedelta(text: str | int, **parts: int) -> timedelta:
    """Return a timedelta of `parts`; raise ValueError when it is too long to represent."""
    try:
        return timedelta(**parts)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def _coerce_duration(value: object) -> timedelta:
    """Return `value` as a timedelta: a timedelta as it is, anything else through parse_duration."""
    if isinstance(value, timedelta):
        return value

    if isinstance(value, int | str):
        return parse_duration(value)

    raise ValueError(f"expected a duration: {DURATION_FORMS}")


def _coerce_absolute_path(value: object) -> Path:
    """Return `value` as a Path when it is an absolute path written as text."""
    path = Path(value) if isinstance(value, str) else value
    if not isinstance(path, Path) or not path.is_absolute():
        raise ValueError("expected an absolute path, e.g. /var/lib/ckptd")

    return path


def _coerce_store(value: object) -> Path | str:
    """Return `value` as a store location: the word "engine", or an absolute path."""
    if value == "engine":
        return "engine"

    try:
        return _coerce_absolute_path(value)
    except ValueError:
        raise ValueError(
            'expected "engine" (Docker\'s own folder) or an absolute path, '
            "e.g. /var/lib/ckptd/store"
        ) from None


Duration = Annotated[timedelta, BeforeValidator(_coerce_duration)]
AbsolutePath = Annotated[Path, BeforeValidator(_coerce_absolute_path)]
StoreLocation = Annotated[Path | Literal["engine"], BeforeValidator(_coerce_store)]
Command = Annotated[list[str], Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    """Base of the policy models: immutable, strict about types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _cron_trigger(expr: str, timezone: ZoneInfo, jitter: int | None) -> Any:
    """Return an APScheduler CronTrigger for a 5-field crontab `expr`; raise ValueError if bad."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"got {len(fields)} field(s), expected 5")

    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week,
        timezone=timezone,
        jitter=jitter,
    )


def _check_crontab(expr: str) -> None:
    """Raise ValueError unless APScheduler 3 runs `expr` exactly when crontab would."""
    try:
        _cron_trigger(expr, ZoneInfo("UTC"), None)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression ({exc}); expected {_CRON_FIELDS}") from None

    _, _, day, _, day_of_week = expr.split()
    if any(character.isdigit() for character in day_of_week):
        raise ValueError(
            "write days of the week as names (sun, mon, ..., sat; ranges like mon-fri): "
            "APScheduler 3 counts 0 as Monday where crontab counts 0 as Sunday"
        )

    if day != "*" and day_of_week != "*":
        raise ValueError(
            "restrict day-of-month or day-of-week, not both: crontab runs when either "
            "matches, APScheduler only when both do"
        )


class Schedule(_Model):
    """When a target is checkpointed: a fixed interval (`every`) or a crontab line (`cron`)."""

    every: Duration | None = None
    cron: str | None = None
    timezone: str = "UTC"

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("the interval must be longer than zero")

        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            _check_crontab(value)

        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return _check_timezone_name(value)

    @model_validator(mode="after")
    def _check_kind(self) -> Schedule:
        if self.every is None and self.cron is None:
            raise ValueError("expected one of 'every' (an interval) or 'cron' (a crontab line)")

        if self.every is not None and self.cron is not None:
            raise ValueError("has both 'every' and 'cron'; keep exactly one")

        return self

    def build_trigger(self, jitter: timedelta) -> Any:
        """Return the APScheduler trigger for this schedule, firing up to `jitter` late."""
        timezone = ZoneInfo(self.timezone)
        jitter_seconds = int(jitter.total_seconds()) or None
        if self.every is not None:
            seconds = self.every.total_seconds()
            return IntervalTrigger(seconds=seconds, timezone=timezone, jitter=jitter_seconds)

        if self.cron is not None:
            return _cron_trigger(self.cron, timezone, jitter_seconds)

        raise AssertionError("a validated schedule has 'every' or 'cron'")

    def describe(self) -> str:
        """Return the schedule as a short phrase, e.g. "every 5m"."""
        if self.every is not None:
            return f"every {format_duration(self.every)}"

        return f'cron "{self.cron}" ({self.timezone})'


RETENTION_COUNT_RULES = (
    "keep_last",
    "keep_minutely",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
)
RETENTION_SPAN_RULES = (
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
)


def _coerce_count(value: object) -> int | str:
    """Return a retention count: a whole number of at least 1, or the word "unlimited"."""
    if value == UNLIMITED:
        return UNLIMITED

    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number of at least 1 or 'unlimited'")

    if value < 1:
        raise ValueError("should be greater than or equal to 1, or 'unlimited'")

    return value


def _coerce_span(value: object) -> Span:
    """Return `value` as a calendar span: a Span as it is, anything else through parse_span."""
    return value if isinstance(value, Span) else parse_span(value)


def _coerce_size(value: object) -> int:
    """Return `value` as a number of bytes through parse_size."""
    return parse_size(value)


def _check_timezone_name(value: str) -> str:
    """Return `value` when it names an IANA time zone; raise ValueError otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            "unknown time zone; expected an IANA name such as UTC or Europe/Berlin"
        ) from None

    return value


RetentionCount = Annotated[int | str, PlainValidator(_coerce_count)]
CalendarSpan = Annotated[Span, PlainValidator(_coerce_span)]
Size = Annotated[int, PlainValidator(_coerce_size)]


class Retention(_Model):
    """Which checkpoints of a target to keep; with no rule set, every checkpoint is kept.

    The rules are restic's `forget` rules (see ckptd.retention); the budgets and the time zone
    are ckptd's own.
    """

    keep_last: RetentionCount | None = None
    keep_minutely: RetentionCount | None = None
    keep_hourly: RetentionCount | None = None
    keep_daily: RetentionCount | None = None
    keep_weekly: RetentionCount | None = None
    keep_monthly: RetentionCount | None = None
    keep_yearly: RetentionCount | None = None
    keep_within: CalendarSpan | None = None
    keep_within_hourly: CalendarSpan | None = None
    keep_within_daily: CalendarSpan | None = None
    keep_within_weekly: CalendarSpan | None = None
    keep_within_monthly: CalendarSpan | None = None
    keep_within_yearly: CalendarSpan | None = None
    timezone: str = "UTC"
    max_total_size: Size | None = None
    min_free_disk: Size | None = None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return _check_timezone_name(value)

    def has_rules(self) -> bool:
        """Return True when at least one keep_* rule is set."""
        names = RETENTION_COUNT_RULES + RETENTION_SPAN_RULES
        return any(getattr(self, name) is not None for name in names)

    def describe(self) -> str:
        """Return the rules as a short phrase, e.g. "keep last 3, daily 7, within 2d"."""
        rules: list[str] = []
        for name in RETENTION_COUNT_RULES + RETENTION_SPAN_RULES:
            value = getattr(self, name)
            if value is not None:
                rules.append(f"{name.removeprefix('keep_').replace('_', ' ')} {value}")

        phrase = "keep " + ", ".join(rules) if rules else "keep all"
        if self.max_total_size is not None:
            phrase += f", at most {format_size(self.max_total_size)}"

        if self.min_free_disk is not None:
            phrase += f", keep {format_size(self.min_free_disk)} disk free"

        return phrase


class Selector(_Model):
    """Containers chosen by their labels: every running container carrying all of them."""

    labels: dict[str, str]

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("expected at least one label, e.g. {app: solver}")

        return value

    def matches(self, labels: dict[str, str]) -> bool:
        """True when ``labels`` (a container's) carry every label of the selector."""
        return all(labels.get(key) == value for key, value in self.labels.items())

    def describe(self) -> str:
        """Return the selector as a short phrase, e.g. "containers labelled app=solver"."""
        pairs = ",".join(f"{key}={value}" for key, value in sorted(self.labels.items()))
        return f"containers labelled {pairs}"


class Verify(_Model):
    """A restore drill: restore the newest checkpoint into a throwaway clone and watch it."""

    every: Duration
    run_for: Duration = timedelta(seconds=20)
    # Run inside the clone (exec, no shell) once it has run for `run_for`; exit 0 passes.
    probe: Command | None = None

    @field_validator("every", "run_for")
    @classmethod
    def _check_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")

        return value


class Hooks(_Model):
    """Commands run inside the container (exec, no shell) right before and after the dump."""

    pre: list[Command] = []
    post: list[Command] = []
    timeout: Duration = timedelta(seconds=30)
    on_error: Literal["abort", "continue"] = "abort"

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the hook timeout must be longer than zero")

        return value


class Target(_Model):
    """One container to checkpoint on a schedule, under a name used in checkpoints and metrics.

    Instead of one ``container``, a ``selector`` picks every running container with the given
    labels; the daemon then runs the schedule for each of them (see `Target.bound`).
    """

    name: str
    # Empty when the target has a selector; a bound copy carries the container's name.
    container: str = ""
    selector: Selector | None = None
    schedule: Schedule
    jitter: Duration = timedelta(0)
    # Declared before leave_running, whose check reads it; daemon.engine fills it when unset.
    engine: EngineName = "docker"
    leave_running: bool = True
    retention: Retention = Retention()
    # None: the daemon's store; "engine": only Docker's own folder, as before ckptd had a store.
    store: StoreLocation | None = None
    restore_on_start: bool = False
    verify: Verify | None = None
    hooks: Hooks | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TARGET_NAME_RE.fullmatch(value):
            raise ValueError(
                "expected 1-40 letters, digits, '_' or '.', starting with a letter or digit; "
                "no '-', because checkpoint names are ckptd-<target>-<timestamp>"
            )

        return value

    @field_validator("container")
    @classmethod
    def _check_container(cls, value: str) -> str:
        if not CONTAINER_REF.fullmatch(value):
            raise ValueError(
                "expected a container name or id as Docker writes them: up to 254 letters, "
                "digits, '_', '.' or '-', starting with a letter or digit"
            )

        return value

    @field_validator("leave_running")
    @classmethod
    def _check_leave_running(cls, value: bool, info: ValidationInfo) -> bool:
        if not value and info.data.get("engine") == "runc":
            raise ValueError(
                "engine runc (set on the target or by daemon.engine) only takes checkpoints that "
                "leave the container running; set leave_running: true or engine: docker"
            )

        return value

    @field_validator("jitter")
    @classmethod
    def _check_jitter(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("jitter must not be negative")

        return value

    @model_validator(mode="after")
    def _check_container_or_selector(self) -> Target:
        if bool(self.container) == (self.selector is not None):
            raise ValueError(
                "expected exactly one of 'container' (a name or id) or 'selector' "
                "(e.g. {labels: {app: solver}})"
            )

        return self

    def bound(self, container: str) -> Target:
        """Return this target for one of the containers its selector matched."""
        return self.model_copy(update={"container": container})

    def describe_containers(self) -> str:
        """Return "container NAME" or the selector's description."""
        if self.selector is not None and not self.container:
            return self.selector.describe()

        return f"container {self.container}"


def _split_address(text: str) -> tuple[str, int]:
    """Return the host and port of "host:port" ("[v6]:port"); raise ValueError if malformed."""
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise ValueError('expected "host:port", e.g. 127.0.0.1:9479 or [::1]:9479')

    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::1]:9479")
    elif not _HOST_RE.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IPv4 address")

    if not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")

    return host, int(port)


class DaemonSettings(_Model):
    """Settings of the daemon itself, shared by all targets."""

    metrics_address: str = "127.0.0.1:9479"
    max_concurrent: Count = 2
    stop_timeout: Duration = timedelta(seconds=120)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # ckptd's own records (catalog, pins, store) live here; created mode 0700 on first use.
    state_dir: AbsolutePath = Path("/var/lib/ckptd")
    # The engine of every target that names none.
    engine: EngineName = "docker"
    # `ckptd status` asks the running daemon here; the socket is 0600 in a 0700 folder.
    control_socket: AbsolutePath = Path("/run/ckptd/control.sock")
    # Free space to leave on the engine's disk before each checkpoint; a target may override it.
    min_free_disk: Size | None = None
    # Where checkpoints are kept outside the containers' folders; None: <state_dir>/store.
    store: StoreLocation | None = None

    @field_validator("metrics_address")
    @classmethod
    def _check_metrics_address(cls, value: str) -> str:
        _split_address(value)
        return value

    @field_validator("stop_timeout")
    @classmethod
    def _check_stop_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the stop timeout must be longer than zero")

        return value

    @property
    def metrics_host(self) -> str:
        """Return the host part of metrics_address, without brackets around an IPv6 address."""
        return _split_address(self.metrics_address)[0]

    @property
    def metrics_port(self) -> int:
        """Return the port of metrics_address."""
        return _split_address(self.metrics_address)[1]


def _duplicate_names(names: Sequence[object]) -> list[tuple[int, int]]:
    """Return (index, index of first use) for each string in `names` that repeats an earlier one."""
    first_use: dict[str, int] = {}
    duplicates: list[tuple[int, int]] = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue

        if name in first_use:
            duplicates.append((index, first_use[name]))

        first_use.setdefault(name, index)

    return duplicates


class Policy(_Model):
    """The whole policy file: daemon settings and the targets to checkpoint."""

    daemon: DaemonSettings = DaemonSettings()
    targets: list[Target]

    @model_validator(mode="before")
    @classmethod
    def _inherit_engine(cls, data: Any) -> Any:
        """Give daemon.engine to each target that names no engine of its own."""
        daemon = data.get("daemon") if isinstance(data, dict) else None
        engine = daemon.get("engine") if isinstance(daemon, dict) else None
        targets = data.get("targets") if isinstance(data, dict) else None
        if engine not in get_args(EngineName) or not isinstance(targets, list):
            return data

        inherited = [
            {**target, "engine": engine}
            if isinstance(target, dict) and "engine" not in target
            else target
            for target in targets
        ]
        return {**data, "targets": inherited}

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, value: list[Target]) -> list[Target]:
        if not value:
            raise ValueError("at least one target is required")

        duplicates = _duplicate_names([target.name for target in value])
        if duplicates:
            names = ", ".join(repr(value[index].name) for index, _ in duplicates)
            raise PydanticCustomError(
                _DUPLICATE_NAME, "target names must be unique; repeated: {names}", {"names": names}
            )

        return value

    def store_for(self, target: Target) -> Path | None:
        """Return the store folder of `target`'s checkpoints, or None for the engine's only."""
        return store_location(self.daemon, target)

    def target(self, name: str) -> Target:
        """Return the target called `name`; raise UsageError listing the names when none is."""
        for target in self.targets:
            if target.name == name:
                return target

        known = ", ".join(target.name for target in self.targets)
        raise UsageError(f"no target named {name!r} in the policy; its targets: {known}")


def store_location(daemon: DaemonSettings, target: Target | None) -> Path | None:
    """Return where `target`'s (or, for None, the daemon's) checkpoints are stored; None: engine."""
    location = (target.store if target else None) or daemon.store or daemon.state_dir / "store"
    return None if location == "engine" else Path(location)


def load_policy(path: Path) -> Policy:
    """Return the policy in the YAML file at `path`.

    Raises PolicyError carrying every problem found: an unreadable file, broken YAML, or each
    key that does not match the schema, with its key path and line.
    """
    mode_problem = file_mode_problem(path)
    if mode_problem is not None:
        raise PolicyError(path, [mode_problem])

    root, data = _parse_yaml(path, _read_text(path))
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        keys = ", ".join(Policy.model_fields)
        raise PolicyError(path, [Problem("", f"expected a mapping with keys {keys}; got {kind}")])

    problems = _duplicate_key_problems(root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, data, root)
    else:
        problems += _jitter_problems(policy, root)

    if problems:
        raise PolicyError(path, sorted(problems, key=lambda problem: problem.line or 0))

    return policy


def parse_retention(settings: Mapping[str, Any], source: str = "retention settings") -> Retention:
    """Return the retention rules in `settings`, a mapping written as a policy's `retention:`.

    Raises PolicyError (named after `source`) carrying every problem, each at its key path.
    """
    try:
        return Retention.model_validate(dict(settings))
    except ValidationError as exc:
        problems = [
            Problem(
                _location(("retention", *error["loc"])),
                _message(error, known=list(Retention.model_fields)),
                None if error["type"] in ("missing", "extra_forbidden") else error["input"],
            )
            for error in exc.errors(include_url=False)
        ]

    raise PolicyError(source, problems)


def _read_text(path: Path) -> str:
    """Return the text of the file at `path`; raise PolicyError if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"

    raise PolicyError(path, [Problem("", f"cannot read {path}: {reason}")])


def _parse_yaml(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """Return the YAML node tree of `text` and the data it holds; raise PolicyError if broken.

    Also raised when reading it would cost unbounded time or memory (see ckptd.policyfile).
    """
    try:
        problem = text_shape_problem(text)
        if problem is not None:
            raise PolicyError(path, [problem])

        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            problem = None if root is None else expansion_problem(root)
            if problem is not None:
                raise PolicyError(path, [problem])

            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise PolicyError(path, [_yaml_problem(exc)]) from None
    except RecursionError:
        problem = Problem("", "nested too deeply (a policy needs a handful of levels)")
        raise PolicyError(path, [problem]) from None
    except (ValueError, OverflowError) as exc:
        # PyYAML turns scalars into numbers and dates itself; a 5000-digit integer or a
        # 30 February is its ValueError, not a YAMLError.
        raise PolicyError(path, [Problem("", f"a value YAML cannot represent: {exc}")]) from None

    return root, data


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    """Return the problem a YAML parser error describes, at its (1-based) line when it has one."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Problem("", f"not valid YAML: {exc}")

    reason = f"not valid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        reason += f" ({exc.context} at line {exc.context_mark.line + 1})"

    return Problem("", reason, line=exc.problem_mark.line + 1)


def _duplicate_key_problems(root: yaml.Node | None) -> list[Problem]:
    """Return a problem for each key repeated in one mapping: YAML silently keeps the last."""
    problems: list[Problem] = []
    pending: list[tuple[Loc, yaml.Node]] = [] if root is None else [((), root)]
    visited: set[int] = set()
    while pending:
        loc, node = pending.pop()
        if id(node) in visited:
            continue

        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending += [((*loc, index), item) for index, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            problems += _repeated_keys(loc, node)
            pending += [((*loc, key.value), value) for key, value in _scalar_keys(node)]

    return problems


def _scalar_keys(node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """Return the (key, value) pairs of `node` whose key is a plain scalar, merge keys left out."""
    return [
        (key, value)
        for key, value in node.value
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
    ]


def _repeated_keys(loc: Loc, node: yaml.MappingNode) -> list[Problem]:
    """Return a problem for each key of mapping `node` (at `loc`) already used in it."""
    seen: set[str] = set()
    problems: list[Problem] = []
    for key, _ in _scalar_keys(node):
        if key.value in seen:
            message = "duplicate key; YAML would silently keep only the last one"
            line = key.start_mark.line + 1
            problems.append(Problem(_location((*loc, key.value)), message, line=line))

        seen.add(key.value)

    return problems


def _validation_problems(exc: ValidationError, data: dict[Any, Any], root: Any) -> list[Problem]:
    """Return one problem per pydantic error, plus one per repeated target name."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        # Reported below from the raw data instead, once per repeated name and even when other
        # targets are invalid (pydantic only runs this check once all targets validate).
        if error["type"] == _DUPLICATE_NAME:
            continue

        loc = tuple(error["loc"])
        value = None if error["type"] in ("missing", "extra_forbidden") else error["input"]
        problems.append(Problem(_location(loc), _message(error), value, _line_of(root, loc)))

    return problems + _duplicate_name_problems(data, root)


def _jitter_problems(policy: Policy, root: Any) -> list[Problem]:
    """Return a problem at targets[i].jitter for each jitter as long as its schedule's interval.

    Such a jitter can push every run past the next one, so the target may never be
    checkpointed while its expected interval (and the staleness alert) says it should be. For a
    crontab line the interval is the shortest gap between its coming fire times.
    """
    problems: list[Problem] = []
    for index, target in enumerate(policy.targets):
        interval = _shortest_interval(target.schedule)
        if interval is None or target.jitter < interval:
            continue

        loc: Loc = ("targets", index, "jitter")
        shown = format_duration(interval)
        message = f"jitter must be shorter than the schedule's interval ({shown})"
        problems.append(
            Problem(_location(loc), message, format_duration(target.jitter), _line_of(root, loc))
        )

    return problems


def _shortest_interval(schedule: Schedule, fires: int = 64) -> timedelta | None:
    """Return `every`, or the shortest gap between a crontab line's next `fires` fire times."""
    if schedule.every is not None:
        return schedule.every

    trigger = schedule.build_trigger(timedelta(0))
    previous = trigger.get_next_fire_time(None, datetime.now(UTC))
    shortest: timedelta | None = None
    for _ in range(fires):
        following = None if previous is None else trigger.get_next_fire_time(previous, previous)
        if previous is None or following is None:
            break

        # Timestamps, not datetimes of one zone: their difference would ignore a DST change.
        gap = timedelta(seconds=following.timestamp() - previous.timestamp())
        shortest = gap if shortest is None else min(shortest, gap)
        previous = following

    return shortest


def _duplicate_name_problems(data: dict[Any, Any], root: Any) -> list[Problem]:
    """Return a problem at targets[i].name for each target reusing an earlier target's name."""
    targets = data.get("targets")
    if not isinstance(targets, list):
        return []

    names = [target.get("name") if isinstance(target, dict) else None for target in targets]
    problems: list[Problem] = []
    for index, first in _duplicate_names(names):
        loc: Loc = ("targets", index, "name")
        message = f"duplicate target name; targets[{first}] is already called that"
        problems.append(Problem(_location(loc), message, names[index], _line_of(root, loc)))

    return problems


def _location(loc: Loc) -> str:
    """Return a key path such as "targets[1].schedule.every" for a pydantic location."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)

    return text


def _message(error: ErrorDetails, known: list[str] | None = None) -> str:
    """Return what pydantic's `error` expected, worded for someone editing the policy file.

    `known` lists the keys allowed beside an unknown one, when the error's location cannot be
    read from the top of a policy.
    """
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_known_keys(tuple(error["loc"])) if known is None else known)
        return f"unknown key; expected one of: {allowed}"

    if error["type"] == "missing":
        return "required key is missing"

    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", message)
    return re.sub(r"^Input should be", "should be", message)


def _known_keys(loc: Loc) -> list[str]:
    """Return the keys allowed in the mapping that holds the key at `loc`."""
    model: type[BaseModel] | None = Policy
    for part in loc[:-1]:
        if isinstance(part, str) and model is not None:
            field = model.model_fields.get(part)
            model = None if field is None else _nested_model(field.annotation)

    return [] if model is None else list(model.model_fields)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """Return the model class `annotation` holds (directly, in a list or optional), if any."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate

    return None


def _line_of(root: Any, loc: Loc) -> int | None:
    """Return the 1-based line of the key at `loc`, or of its nearest ancestor present."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pairs = [pair for pair in _scalar_keys(node) if pair[0].value == part]
            if not pairs:
                break

            key, node = pairs[-1]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break

            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break

    return line


# check-config's summary wraps a target's line at this width, under the target's details.
SUMMARY_COLUMNS = 100


def summarize_policy(policy: Policy, path: Path) -> str:
    """Return a one-screen summary of a valid policy for `ckptd check-config`."""
    daemon = policy.daemon
    settings = [
        f"metrics on {daemon.metrics_address}",
        f"up to {daemon.max_concurrent} checkpoint(s) at once",
        f"stop timeout {format_duration(daemon.stop_timeout)}",
        f"log level {daemon.log_level}",
    ]
    if daemon.min_free_disk is not None:
        settings.append(f"keep {format_size(daemon.min_free_disk)} disk free")

    settings += [f"engine {daemon.engine}", _describe_store(store_location(daemon, None))]
    lines = [
        f"{path}: OK, {len(policy.targets)} target(s)",
        *_wrap_phrases("daemon: ", settings, len("daemon: ")),
        "targets:",
    ]
    width = max((len(target.name) for target in policy.targets), default=0)
    for target in policy.targets:
        lines += _describe_target(target, width)

    return "\n".join(lines)


def _wrap_phrases(head: str, phrases: list[str], indent: int) -> list[str]:
    """Return ``head`` and the comma-separated phrases, wrapped between phrases, not inside one.

    A target with hooks, a drill and a calendar retention says a lot; its continuation lines are
    indented by ``indent`` so the target names stay a column of their own.
    """
    lines = [head]
    for index, phrase in enumerate(phrases):
        text = phrase + ("," if index < len(phrases) - 1 else "")
        fits = len(lines[-1]) + 1 + len(text) <= SUMMARY_COLUMNS
        if lines[-1].strip() and not fits:
            lines.append(" " * indent + text)
        else:
            lines[-1] += ("" if lines[-1].endswith(" ") else " ") + text

    return lines


def _describe_store(location: Path | None) -> str:
    """Return where checkpoints are kept, for the summary."""
    return "no store (the engine's folders only)" if location is None else f"store {location}"


def _describe_extras(target: Target) -> list[str]:
    """Return the summary's phrases for a target's engine, store, restore, drill and hooks."""
    extras = [f"engine {target.engine}"]
    if target.store is not None:
        extras.append(_describe_store(None if target.store == "engine" else Path(target.store)))

    if target.restore_on_start:
        extras.append("restore on start")

    if target.verify is not None:
        verify = target.verify
        drill = f"drill every {format_duration(verify.every)} for {format_duration(verify.run_for)}"
        extras.append(drill + (f" then probe {shlex.join(verify.probe)}" if verify.probe else ""))

    if target.hooks is not None:
        hooks = target.hooks
        extras.append(
            f"hooks {len(hooks.pre)} pre, {len(hooks.post)} post "
            f"(timeout {format_duration(hooks.timeout)}, on error {hooks.on_error})"
        )

    return extras


def _describe_target(target: Target, width: int) -> list[str]:
    """Return the summary lines for `target`, its name padded to `width`."""
    running = "leave running" if target.leave_running else "stop after checkpoint"
    details = [
        target.describe_containers(),
        target.schedule.describe(),
        f"jitter {format_duration(target.jitter)}",
        running,
        *target.retention.describe().split(", "),
        *_describe_extras(target),
    ]
    return _wrap_phrases(f"  {target.name:<{width}}  ", details, width + 4)
