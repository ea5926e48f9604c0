"""Policy problems show values the way the policy file spells them, not as Python reprs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ckptd.errors import DiskSpaceError, PolicyError, yaml_value
from ckptd.policy import load_policy


def rendered(tmp_path: Path, text: str) -> list[str]:
    """Return every problem of a policy, rendered as `check-config` prints it."""
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    return [problem.render() for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("soon", "'soon'"),
        (3, "3"),
        ([1, "a"], "[1, 'a']"),
        ({"name": "x", "schedule": {}}, "a mapping with keys name, schedule"),
        ({}, "an empty mapping"),
    ],
)
def test_yaml_value(value: object, shown: str) -> None:
    assert shown == yaml_value(value)


def test_a_boolean_is_shown_as_yaml_writes_it(tmp_path: Path) -> None:
    problems = rendered(
        tmp_path,
        """\
        targets:
          - {name: a, container: true, schedule: {every: 1m}}
          - {name: b, container: c, schedule: {every: false}}
        """,
    )

    assert any(p.startswith("line 2: targets[0].container:") for p in problems), problems
    assert any(p.endswith("(got true)") for p in problems), problems
    assert any(p.endswith("(got false)") for p in problems), problems
    assert not any("True" in p or "False" in p for p in problems), problems


def test_container_or_selector_names_the_keys_it_found(tmp_path: Path) -> None:
    problems = rendered(
        tmp_path,
        """\
        targets:
          - {name: z, schedule: {every: 1m}, jitter: 2s}
        """,
    )

    assert 1 == len(problems), problems
    assert "exactly one of 'container'" in problems[0]
    assert problems[0].endswith("(got a mapping with keys name, schedule, jitter)")
    assert "{" not in problems[0].split("(got")[-1]


def test_too_little_disk_is_said_in_units_people_read() -> None:
    error = DiskSpaceError("cpp-1", free=512 * 1024**2, needed=3 * 1024**3 + 1024**3 // 2)

    assert "'cpp-1': 512MiB free, 3.5GiB needed (min_free_disk" in str(error)
