"""The policy keys of the store, restore drills, restore_on_start and hooks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ckptd.policy import load_policy
from tests.test_policy import problems_of, write

TARGET = """
targets:
  - name: solver
    container: cpp-solver
    schedule: {every: 5m}
"""


def test_the_store_defaults_to_the_state_folder(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "daemon: {state_dir: /srv/ckptd}\n" + TARGET))

    assert Path("/srv/ckptd/store") == policy.store_for(policy.targets[0])


def test_a_target_may_keep_the_engine_only_or_its_own_store(tmp_path: Path) -> None:
    engine = load_policy(write(tmp_path, TARGET + "    store: engine\n"))
    own = load_policy(write(tmp_path, "daemon: {store: engine}\n" + TARGET + "    store: /srv/s\n"))

    assert engine.store_for(engine.targets[0]) is None
    assert Path("/srv/s") == own.store_for(own.targets[0])


def test_a_relative_store_is_refused_with_its_key_path(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, TARGET + "    store: store\n")

    assert "targets[0].store" == problem.location
    assert 'expected "engine"' in problem.message


def test_verify_and_hooks_parse(tmp_path: Path) -> None:
    text = TARGET + (
        "    restore_on_start: true\n"
        "    verify: {every: 6h, probe: [/app, save-state]}\n"
        "    hooks: {pre: [[/app, save-state]], timeout: 10s, on_error: continue}\n"
    )

    (target,) = load_policy(write(tmp_path, text)).targets

    assert target.restore_on_start
    assert target.verify is not None
    assert (timedelta(hours=6), timedelta(seconds=20)) == (
        target.verify.every,
        target.verify.run_for,
    )
    assert target.hooks is not None
    assert [["/app", "save-state"]] == target.hooks.pre
    assert ("continue", timedelta(seconds=10)) == (target.hooks.on_error, target.hooks.timeout)


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("    verify: {every: 0s}\n", "targets[0].verify.every"),
        ("    verify: {every: 1h, probe: []}\n", "targets[0].verify.probe"),
        ("    hooks: {pre: [[]]}\n", "targets[0].hooks.pre[0]"),
        ("    hooks: {pre: [/app save-state]}\n", "targets[0].hooks.pre[0]"),
        ("    hooks: {timeout: 0s}\n", "targets[0].hooks.timeout"),
        ("    hooks: {on_error: ignore}\n", "targets[0].hooks.on_error"),
    ],
)
def test_bad_verify_and_hooks_are_reported_where_they_are(
    tmp_path: Path, text: str, location: str
) -> None:
    problems = problems_of(tmp_path, TARGET + text)

    assert location in [problem.location for problem in problems]
