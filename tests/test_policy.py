"""The policy file: what it accepts, what it rejects, and where it says the problem is."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ckptd.errors import PolicyError, Problem, UsageError
from ckptd.policy import (
    DaemonSettings,
    Policy,
    Retention,
    Schedule,
    Target,
    format_duration,
    load_policy,
    parse_duration,
    summarize_policy,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "policy.example.yaml"

MINIMAL = """
targets:
  - name: solver
    container: cpp-solver
    schedule: {every: 5m}
"""


def write(tmp_path: Path, text: str) -> Path:
    """Write `text` (dedented) as a policy file and return its path."""
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    """Return the problems load_policy reports for `text`; fail if it loads."""
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))

    return caught.value.problems


def target(**fields: object) -> Target:
    """Return a target with an every-5m schedule and any of its fields replaced."""
    values: dict[str, object] = {"name": "solver", "container": "c", "schedule": {"every": 300}}
    return Target.model_validate(values | fields)


# --- the example policy ----------------------------------------------------------------------


def test_example_policy_daemon_settings() -> None:
    daemon = load_policy(EXAMPLE).daemon

    assert "127.0.0.1" == daemon.metrics_host
    assert 9479 == daemon.metrics_port
    assert 2 == daemon.max_concurrent
    assert timedelta(seconds=120) == daemon.stop_timeout
    assert "info" == daemon.log_level


def test_example_policy_targets() -> None:
    solver, gameserver, workers = load_policy(EXAMPLE).targets

    assert ("solver", "ckptd-example") == (solver.name, solver.container)
    assert timedelta(minutes=5) == solver.schedule.every
    assert timedelta(seconds=30) == solver.jitter
    assert solver.leave_running
    assert 3 == solver.retention.keep_last
    assert ("gameserver", "*/15 * * * *") == (gameserver.name, gameserver.schedule.cron)
    assert "Europe/Berlin" == gameserver.schedule.timezone
    assert 5 == gameserver.retention.keep_last
    assert workers.selector is not None
    assert {"app": "solver"} == workers.selector.labels


def test_example_policy_summary_has_one_line_per_target() -> None:
    summary = summarize_policy(load_policy(EXAMPLE), EXAMPLE)
    lines = summary.splitlines()

    assert f"{EXAMPLE}: OK, 3 target(s)" == lines[0]
    assert lines[2].endswith("engine docker, store /var/lib/ckptd/store")
    assert [
        "  solver      container ckptd-example, every 5m, jitter 30s, leave running, keep last 3,",
        "              engine docker, restore on start, drill every 6h for 20s then probe /app "
        "save-state,",
        "              hooks 1 pre, 0 post (timeout 30s, on error abort)",
    ] == lines[4:7]
    assert lines[7].startswith('  gameserver  container gameserver, cron "*/15 * * * *"')
    assert lines[9].endswith("keep 10GiB disk free, engine runc")
    assert lines[10].startswith("  workers     containers labelled app=solver, every 30m")
    assert 12 == len(lines)
    assert all(len(line) <= 100 for line in lines)


def test_the_summary_says_where_each_target_is_stored(tmp_path: Path) -> None:
    text = """
    daemon: {store: engine}
    targets:
      - {name: a, container: c, schedule: {every: 1m}, store: /srv/ckpt}
      - name: b
        container: c
        schedule: {every: 1m}
        hooks: {post: [[/app, resume]], on_error: continue}
        verify: {every: 1h}
    """
    path = write(tmp_path, text)
    path.chmod(0o600)
    lines = summarize_policy(load_policy(path), path).splitlines()

    assert lines[2].endswith("engine docker, no store (the engine's folders only)")
    assert lines[4].endswith("keep all, engine docker, store /srv/ckpt")
    assert lines[5].endswith("keep all, engine docker,")
    assert "drill every 1h for 20s, hooks 0 pre, 1 post (timeout 30s, on error continue)" == (
        lines[6].strip()
    )
    assert "restore on start" not in "\n".join(lines)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("0s", timedelta(0)),
        (" 45s ", timedelta(seconds=45)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (0, timedelta(0)),
    ],
)
def test_parse_duration_accepts(text: str | int, expected: timedelta) -> None:
    assert expected == parse_duration(text)


@pytest.mark.parametrize(
    "text", ["", "5x", "m5", "1.5h", "-5s", "30m1h", "1h 30m", "5 m", "h", -1, True, "99999999999w"]
)
def test_parse_duration_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="duration|negative"):
        parse_duration(text)


def test_parse_duration_error_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"30s, 90m, 36h, 7d, 2w, 1h30m"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(timedelta(0), "0s"), (timedelta(seconds=90), "1m30s"), (timedelta(days=15), "2w1d")],
)
def test_format_duration(duration: timedelta, expected: str) -> None:
    assert expected == format_duration(duration)


# --- valid variations ------------------------------------------------------------------------


def test_minimal_policy_takes_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, MINIMAL))
    solver = policy.target("solver")

    assert DaemonSettings() == policy.daemon
    assert timedelta(0) == solver.jitter
    assert solver.leave_running
    assert Retention() == solver.retention
    assert "keep all" == solver.retention.describe()
    assert "UTC" == solver.schedule.timezone


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        ("metrics_address: '[::1]:9100'", "metrics_host", "::1"),
        ("metrics_address: '[::1]:9100'", "metrics_port", 9100),
        ("metrics_address: 0.0.0.0:1", "metrics_host", "0.0.0.0"),
        ("metrics_address: localhost:65535", "metrics_port", 65535),
        ("max_concurrent: 1", "max_concurrent", 1),
        ("stop_timeout: 90", "stop_timeout", timedelta(seconds=90)),
        ("stop_timeout: 1h30m", "stop_timeout", timedelta(minutes=90)),
        ("log_level: debug", "log_level", "debug"),
        ("state_dir: /srv/ckptd", "state_dir", Path("/srv/ckptd")),
    ],
)
def test_valid_daemon_settings(tmp_path: Path, text: str, attribute: str, expected: object) -> None:
    policy = load_policy(write(tmp_path, f"daemon:\n  {text}\n{textwrap.dedent(MINIMAL)}"))

    assert expected == getattr(policy.daemon, attribute)


@pytest.mark.parametrize(
    ("fields", "attribute", "expected"),
    [
        ({"name": "a"}, "name", "a"),
        ({"name": "Solver_2.old"}, "name", "Solver_2.old"),
        ({"name": "x" * 40}, "name", "x" * 40),
        ({"container": "0123abcd"}, "container", "0123abcd"),
        ({"jitter": "2m"}, "jitter", timedelta(minutes=2)),
        ({"jitter": 15}, "jitter", timedelta(seconds=15)),
        ({"leave_running": False}, "leave_running", False),
        ({"retention": {"keep_last": 1}}, "retention", Retention(keep_last=1)),
        ({"retention": {}}, "retention", Retention()),
    ],
)
def test_valid_target_fields(fields: dict[str, object], attribute: str, expected: object) -> None:
    assert expected == getattr(target(**fields), attribute)


@pytest.mark.parametrize(
    ("schedule", "describe"),
    [
        ({"every": "1h30m"}, "every 1h30m"),
        ({"every": 60, "timezone": "Europe/Berlin"}, "every 1m"),
        ({"cron": "0 3 * * *"}, 'cron "0 3 * * *" (UTC)'),
        ({"cron": "30 2 * * mon-fri", "timezone": "America/New_York"}, "America/New_York"),
        ({"cron": "0 0 1,15 * *"}, 'cron "0 0 1,15 * *" (UTC)'),
    ],
)
def test_valid_schedules(schedule: dict[str, object], describe: str) -> None:
    assert describe in Schedule.model_validate(schedule).describe()


def test_the_same_container_may_be_in_two_targets(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
            targets:
              - {name: often, container: db, schedule: {every: 5m}, retention: {keep_last: 3}}
              - {name: daily, container: db, schedule: {cron: "0 3 * * *"}}
            """,
        )
    )

    assert ["db", "db"] == [target.container for target in policy.targets]


# --- triggers --------------------------------------------------------------------------------


def test_every_builds_an_interval_trigger_with_jitter() -> None:
    trigger = Schedule(every=timedelta(minutes=5)).build_trigger(timedelta(seconds=30))

    assert isinstance(trigger, IntervalTrigger)
    assert timedelta(minutes=5) == trigger.interval
    assert 30 == trigger.jitter


def test_cron_builds_a_cron_trigger_in_its_timezone() -> None:
    schedule = Schedule(cron="*/15 * * * *", timezone="Europe/Berlin")
    trigger = schedule.build_trigger(timedelta(0))

    assert isinstance(trigger, CronTrigger)
    assert ZoneInfo("Europe/Berlin") == trigger.timezone
    assert trigger.jitter is None
    assert "*/15" == str(trigger.fields[trigger.FIELD_NAMES.index("minute")])


# --- looking targets up ----------------------------------------------------------------------


def test_target_lookup_names_the_known_targets() -> None:
    policy = Policy(targets=[target(name="a"), target(name="b")])

    assert "b" == policy.target("b").name
    with pytest.raises(UsageError, match=r"no target named 'c' in the policy; its targets: a, b"):
        policy.target("c")


def test_duplicate_names_are_rejected_when_built_in_code() -> None:
    with pytest.raises(ValueError, match="target names must be unique"):
        Policy(targets=[target(name="a"), target(name="a")])


# --- invalid input: each reports exactly one problem at the expected key path ----------------

INVALID = [
    pytest.param(MINIMAL + "colour: red\n", "colour", "unknown key", id="unknown-top-key"),
    pytest.param(
        "daemon: {port: 1}\n" + MINIMAL, "daemon.port", "unknown key", id="unknown-daemon-key"
    ),
    pytest.param(
        MINIMAL + "    keep: 3\n", "targets[0].keep", "unknown key", id="unknown-target-key"
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{every: 5m, at: 3}"),
        "targets[0].schedule.at",
        "unknown key",
        id="unknown-schedule-key",
    ),
    pytest.param(
        MINIMAL + "    retention: {keep_dayly: 7}\n",
        "targets[0].retention.keep_dayly",
        "expected one of: keep_last",
        id="unknown-retention-key",
    ),
    pytest.param(
        MINIMAL.replace("5m", "5 minutes"),
        "targets[0].schedule.every",
        "not a duration",
        id="bad-duration",
    ),
    pytest.param(
        MINIMAL + "    jitter: 1.5\n", "targets[0].jitter", "expected a duration", id="float-jitter"
    ),
    pytest.param(
        MINIMAL.replace("5m", "0s"), "targets[0].schedule.every", "longer than zero", id="zero"
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{every: 5m, cron: '* * * * *'}"),
        "targets[0].schedule",
        "keep exactly one",
        id="every-and-cron",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{timezone: UTC}"),
        "targets[0].schedule",
        "expected one of 'every'",
        id="neither-every-nor-cron",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{cron: '61 * * * *'}"),
        "targets[0].schedule.cron",
        "invalid cron expression",
        id="cron-bad-minute",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{cron: '* * *'}"),
        "targets[0].schedule.cron",
        "expected 5",
        id="cron-three-fields",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{cron: '0 3 * * 1-5'}"),
        "targets[0].schedule.cron",
        "as names",
        id="cron-numeric-weekday",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{cron: '0 3 1 * mon'}"),
        "targets[0].schedule.cron",
        "not both",
        id="cron-day-and-weekday",
    ),
    pytest.param(
        MINIMAL.replace("{every: 5m}", "{every: 5m, timezone: Mars/Olympus}"),
        "targets[0].schedule.timezone",
        "unknown time zone",
        id="bad-timezone",
    ),
    pytest.param(
        MINIMAL.replace("solver", "cpp-solver", 1),
        "targets[0].name",
        "ckptd-<target>-<timestamp>",
        id="name-with-hyphen",
    ),
    pytest.param(
        MINIMAL.replace("solver", "x" * 41, 1), "targets[0].name", "1-40", id="name-too-long"
    ),
    pytest.param(
        MINIMAL.replace("name: solver", "name: _solver"),
        "targets[0].name",
        "starting with",
        id="name-starts-with-underscore",
    ),
    pytest.param(
        MINIMAL.replace("    container: cpp-solver\n", ""),
        "targets[0]",
        "exactly one of 'container' (a name or id) or 'selector'",
        id="missing-container",
    ),
    pytest.param(
        MINIMAL.replace("    container: cpp-solver\n", "    selector: {labels: {app: a}}\n")
        + "    container: cpp-solver\n",
        "targets[0]",
        "exactly one of 'container'",
        id="container-and-selector",
    ),
    pytest.param(
        MINIMAL.replace("    container: cpp-solver\n", "    selector: {labels: {}}\n"),
        "targets[0].selector.labels",
        "at least one label",
        id="empty-selector",
    ),
    pytest.param(
        MINIMAL.replace("    container: cpp-solver\n", "    selector: {labels: {app: 1}}\n"),
        "targets[0].selector.labels.app",
        "should be a valid string",
        id="selector-label-not-a-string",
    ),
    pytest.param(
        MINIMAL.replace("cpp-solver", "' '"),
        "targets[0].container",
        "container name or id",
        id="blank-container",
    ),
    pytest.param(
        MINIMAL + "    leave_running: 'no'\n",
        "targets[0].leave_running",
        "should be a valid boolean",
        id="leave-running-string",
    ),
    pytest.param(
        MINIMAL + "  - {name: solver, container: b, schedule: {every: 1h}}\n",
        "targets[1].name",
        "targets[0] is already called that",
        id="duplicate-name",
    ),
    pytest.param(
        "daemon: {metrics_address: '9479'}\n" + MINIMAL,
        "daemon.metrics_address",
        "host:port",
        id="address-without-host",
    ),
    pytest.param(
        "daemon: {metrics_address: 'localhost:0'}\n" + MINIMAL,
        "daemon.metrics_address",
        "1 to 65535",
        id="address-port-zero",
    ),
    pytest.param(
        "daemon: {metrics_address: '::1:9479'}\n" + MINIMAL,
        "daemon.metrics_address",
        "in brackets",
        id="address-ipv6-without-brackets",
    ),
    pytest.param(
        "daemon: {metrics_address: '[::g]:9479'}\n" + MINIMAL,
        "daemon.metrics_address",
        "not an IPv6 address",
        id="address-bad-ipv6",
    ),
    pytest.param(
        "daemon: {max_concurrent: 0}\n" + MINIMAL,
        "daemon.max_concurrent",
        "greater than or equal to 1",
        id="max-concurrent-zero",
    ),
    pytest.param(
        "daemon: {max_concurrent: '2'}\n" + MINIMAL,
        "daemon.max_concurrent",
        "valid integer",
        id="max-concurrent-string",
    ),
    pytest.param(
        "daemon: {stop_timeout: 0}\n" + MINIMAL,
        "daemon.stop_timeout",
        "longer than zero",
        id="stop-timeout-zero",
    ),
    pytest.param(
        "daemon: {log_level: verbose}\n" + MINIMAL,
        "daemon.log_level",
        "'debug', 'info', 'warning' or 'error'",
        id="bad-log-level",
    ),
    pytest.param(
        "daemon: {state_dir: var/lib/ckptd}\n" + MINIMAL,
        "daemon.state_dir",
        "absolute path",
        id="relative-state-dir",
    ),
    pytest.param(
        MINIMAL + "    retention: {keep_last: 0}\n",
        "targets[0].retention.keep_last",
        "greater than or equal to 1",
        id="keep-last-zero",
    ),
    pytest.param(
        MINIMAL + "    retention: 3\n",
        "targets[0].retention",
        "should be a mapping",
        id="retention-not-a-mapping",
    ),
    pytest.param("targets: []\n", "targets", "at least one target", id="empty-targets"),
    pytest.param("daemon: {}\n", "targets", "required key is missing", id="no-targets"),
    pytest.param(
        MINIMAL + "    schedule: {every: 1h}\n",
        "targets[0].schedule",
        "duplicate key",
        id="duplicate-yaml-key",
    ),
]


@pytest.mark.parametrize(("text", "location", "message"), INVALID)
def test_invalid_policy_reports_the_key_path(
    tmp_path: Path, text: str, location: str, message: str
) -> None:
    problems = problems_of(tmp_path, text)

    assert [location] == [problem.location for problem in problems]
    assert message in problems[0].message


@pytest.mark.parametrize(
    ("text", "location", "line"),
    [
        (MINIMAL + "colour: red\n", "colour", 5),
        (MINIMAL + "    keep: 3\n", "targets[0].keep", 5),
        (MINIMAL.replace("5m", "5 minutes"), "targets[0].schedule.every", 4),
        (MINIMAL.replace("    container: cpp-solver\n", ""), "targets[0]", 2),
        ("targets: []\n", "targets", 1),
    ],
)
def test_problems_carry_the_yaml_line(tmp_path: Path, text: str, location: str, line: int) -> None:
    problems = problems_of(tmp_path, text)

    assert [(location, line)] == [(problem.location, problem.line) for problem in problems]


def test_problem_shows_the_value_received(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL.replace("5m", "5 minutes"))

    assert "5 minutes" == problems[0].value


def test_unknown_key_lists_the_keys_expected(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "daemon: {port: 1}\n" + MINIMAL)

    expected = "unknown key; expected one of: metrics_address, max_concurrent, stop_timeout, "
    assert (
        expected + "log_level, state_dir, engine, control_socket, min_free_disk, store"
        == problems[0].message
    )


def test_every_independent_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
        daemon:
          max_concurrent: 0
        targets:
          - name: solver
            container: cpp-solver
            schedule: {every: 5m, timezone: Nowhere}
          - name: solver
            container: other
            schedule: {every: 1h}
            retention: {keep_last: 0}
    """
    problems = problems_of(tmp_path, text)

    assert [
        ("daemon.max_concurrent", 2),
        ("targets[0].schedule.timezone", 6),
        ("targets[1].name", 7),
        ("targets[1].retention.keep_last", 10),
    ] == [(problem.location, problem.line) for problem in problems]


# --- files that are not policies at all ------------------------------------------------------


def test_missing_file_names_the_file_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    (problem,) = caught.value.problems
    assert f"cannot read {path}: No such file or directory" == problem.message
    assert path == caught.value.path


def test_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path)


def test_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"targets: \xff\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("targets:\n  - name: [solver\n    container: x\n", 3),
        ("daemon:\n  log_level: info\n bad: indent\n", 3),
        ("targets: !!python/object:os.system {}\n", 1),
    ],
)
def test_broken_yaml_reports_the_line(tmp_path: Path, text: str, line: int) -> None:
    (problem,) = problems_of(tmp_path, text)

    assert line == problem.line
    assert problem.message.startswith("not valid YAML: ")


@pytest.mark.parametrize(
    ("text", "found"),
    [("- solver\n", "a list"), ("just text\n", "a str"), ("", "an empty file")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    (problem,) = problems_of(tmp_path, text)

    assert f"expected a mapping with keys daemon, targets; got {found}" == problem.message


def test_policy_error_message_lists_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "daemon: {max_concurrent: 0}" + MINIMAL + "    jitter: soon\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    lines = str(caught.value).splitlines()
    assert f"{path}: 2 problem(s)" == lines[0]
    assert lines[1].startswith("  - line 1: daemon.max_concurrent: should be greater than")
    assert lines[2].startswith("  - line 6: targets[0].jitter: 'soon' is not a duration")


# --- engines ---------------------------------------------------------------------------------


def test_targets_use_the_docker_engine_unless_told() -> None:
    assert "docker" == target().engine
    assert "docker" == DaemonSettings().engine


def test_daemon_engine_is_inherited_by_targets_naming_none(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
            daemon: {engine: runc}
            targets:
              - {name: a, container: c, schedule: {every: 5m}}
              - {name: b, container: c, schedule: {every: 5m}, engine: docker}
            """,
        )
    )

    assert ["runc", "docker"] == [t.engine for t in policy.targets]
    assert "engine runc" in summarize_policy(policy, tmp_path / "policy.yaml")


@pytest.mark.parametrize(
    "text",
    [
        """
        targets:
          - {name: a, container: c, schedule: {every: 5m}, engine: runc, leave_running: false}
        """,
        """
        daemon: {engine: runc}
        targets:
          - {name: a, container: c, schedule: {every: 5m}, leave_running: false}
        """,
    ],
)
def test_the_runc_engine_refuses_leave_running_false(tmp_path: Path, text: str) -> None:
    [problem] = problems_of(tmp_path, text)

    assert "targets[0].leave_running" == problem.location
    assert "leave the container running" in problem.message
    assert problem.line is not None


def test_an_unknown_engine_is_named(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        daemon: {engine: podman}
        targets:
          - {name: a, container: c, schedule: {every: 5m}, engine: crun}
        """,
    )

    assert ["daemon.engine", "targets[0].engine"] == [p.location for p in problems]
    assert all("'docker' or 'runc'" in p.message for p in problems)


def test_a_selector_replaces_the_container(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        MINIMAL.replace("    container: cpp-solver\n", "    selector: {labels: {app: solver}}\n")
    )
    target = load_policy(path).targets[0]

    assert target.selector is not None
    assert target.selector.matches({"app": "solver", "tier": "x"})
    assert not target.selector.matches({"app": "other"})
    assert "containers labelled app=solver" == target.describe_containers()
    assert "solver-1" == target.bound("solver-1").container


def test_a_jitter_as_long_as_the_interval_is_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL + "    jitter: 5m\n")

    assert ["targets[0].jitter"] == [problem.location for problem in problems]
    assert "shorter than the schedule's interval (5m)" in problems[0].message
    assert problems[0].line is not None


def test_a_jitter_shorter_than_the_interval_is_fine(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, MINIMAL + "    jitter: 4m59s\n"))

    assert timedelta(minutes=4, seconds=59) == policy.targets[0].jitter


def test_a_jitter_as_long_as_a_cron_interval_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("{every: 5m}", '{cron: "*/5 * * * *"}') + "    jitter: 10m\n"

    problems = problems_of(tmp_path, text)

    assert ["targets[0].jitter"] == [problem.location for problem in problems]
    assert "shorter than the schedule's interval (5m)" in problems[0].message


def test_a_jitter_shorter_than_a_cron_interval_is_fine(tmp_path: Path) -> None:
    text = MINIMAL.replace("{every: 5m}", '{cron: "0 * * * *"}') + "    jitter: 10m\n"

    assert timedelta(minutes=10) == load_policy(write(tmp_path, text)).targets[0].jitter
