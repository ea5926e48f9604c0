"""Fuzzing the policy loader: whatever the file holds, a clear PolicyError or a valid policy.

Never a traceback, never unbounded time or memory. Together these tests try 10,200
generated documents: random YAML data, valid policies with one part broken, raw text, deep
nesting and alias bombs.
"""

from __future__ import annotations

import os
import string
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptd.errors import PolicyError
from ckptd.policy import Policy, load_policy

# Seconds and bytes any one document may cost. These catch unbounded work (an alias bomb or a
# quadratic parse takes minutes), not slowness: a loaded 2-core machine once took 6.9 s for a
# deep document under tracemalloc, so the bound leaves room for that.
MAX_SECONDS = 30.0
MAX_PEAK_BYTES = 64 * 2**20
# CKPTD_FUZZ_SCALE=0.1 for a quick local run; 1 (the default) tries 10,200 documents.
SCALE = float(os.environ.get("CKPTD_FUZZ_SCALE", "1"))


def examples(count: int) -> int:
    return max(1, int(count * SCALE))


FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

pytestmark = pytest.mark.fuzz

VALID = {
    "daemon": {"metrics_address": "127.0.0.1:9479", "max_concurrent": 2, "state_dir": "/var/x"},
    "targets": [
        {
            "name": "solver",
            "container": "solver-1",
            "schedule": {"every": "5m"},
            "jitter": "10s",
            "retention": {"keep_last": 3},
        }
    ],
}

huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.sampled_from([-(2**63), 2**64]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.text(alphabet=string.printable, max_size=40),
    st.sampled_from(
        ["5m", "0s", "-1s", "99999999999999999999w", "1h30m", "* * * * *", "../x", "/"]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=20), st.integers()), children, max_size=5),
    ),
    max_leaves=40,
)


def check(tmp_path: Path, text: str, memory: bool = False) -> Policy | PolicyError:
    """Load ``text`` as a policy file; fail unless it ends in a Policy or a PolicyError, fast.

    With ``memory``, also bound the memory it took (tracing slows loading several times).
    """
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    if memory:
        tracemalloc.start()
    started = time.monotonic()
    try:
        outcome: Policy | PolicyError = load_policy(path)
    except PolicyError as error:
        outcome = error
    finally:
        elapsed = time.monotonic() - started
        if memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < MAX_PEAK_BYTES, (peak, text[:200])

    assert elapsed < MAX_SECONDS, (elapsed, text[:200])
    if isinstance(outcome, PolicyError):
        assert outcome.problems, text[:200]
        assert all(problem.message for problem in outcome.problems)
    else:
        # A policy that loads must also be usable: every trigger builds.
        for target in outcome.targets:
            target.schedule.build_trigger(target.jitter)

    return outcome


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def set_at(document: Any, path: list[Any], value: Any) -> Any:
    """Return a copy of ``document`` with the value at ``path`` replaced (or added)."""
    if not path:
        return value

    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        copy = dict(document)
        copy[head] = set_at(document.get(head), rest, value)
        return copy

    if isinstance(document, list) and document:
        copy = list(document)
        index = head % len(copy) if isinstance(head, int) else 0
        copy[index] = set_at(copy[index], rest, value)
        return copy

    return {head: set_at(None, rest, value)}


PATHS = st.sampled_from(
    [
        ["daemon"],
        ["daemon", "metrics_address"],
        ["daemon", "max_concurrent"],
        ["daemon", "stop_timeout"],
        ["daemon", "state_dir"],
        ["daemon", "log_level"],
        ["daemon", "engine"],
        ["targets"],
        ["targets", 0],
        ["targets", 0, "name"],
        ["targets", 0, "container"],
        ["targets", 0, "schedule"],
        ["targets", 0, "schedule", "every"],
        ["targets", 0, "schedule", "cron"],
        ["targets", 0, "schedule", "timezone"],
        ["targets", 0, "jitter"],
        ["targets", 0, "leave_running"],
        ["targets", 0, "retention"],
        ["targets", 0, "retention", "keep_last"],
        ["targets", 0, "unknown"],
    ]
)


@settings(FUZZ, max_examples=examples(2400))
@given(data=documents)
def test_any_yaml_data_is_a_policy_or_a_clear_error(tmp_path: Path, data: Any) -> None:
    check(tmp_path, dump(data))


@settings(FUZZ, max_examples=examples(2400))
@given(path=PATHS, value=documents)
def test_a_valid_policy_with_one_part_replaced(tmp_path: Path, path: list[Any], value: Any) -> None:
    check(tmp_path, dump(set_at(VALID, path, value)))


@settings(FUZZ, max_examples=examples(5000))
@given(text=st.text(max_size=400))
def test_raw_text(tmp_path: Path, text: str) -> None:
    check(tmp_path, text)


@settings(FUZZ, max_examples=examples(200))
@given(
    prefix=st.text(alphabet="[{-: ,a1&*!\n\"'", max_size=60),
    depth=st.integers(min_value=1, max_value=3_000),
    opener=st.sampled_from(["[", "{a: ", "- ", "a:\n  "]),
)
def test_deep_nesting(tmp_path: Path, prefix: str, depth: int, opener: str) -> None:
    check(tmp_path, prefix + opener * depth, memory=True)


@settings(FUZZ, max_examples=examples(200))
@given(
    depth=st.integers(min_value=1, max_value=30),
    fanout=st.integers(min_value=2, max_value=12),
    where=PATHS,
)
def test_alias_bombs(tmp_path: Path, depth: int, fanout: int, where: list[Any]) -> None:
    lines = ["bomb0: &a0 [x, y]"]
    for level in range(1, depth + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(fanout))
        lines.append(f"bomb{level}: &a{level} [{refs}]")
    document = "\n".join(lines) + "\n" + dump(set_at(VALID, where, "PLACEHOLDER"))
    check(tmp_path, document.replace("PLACEHOLDER", f"*a{depth}"), memory=True)


def test_the_valid_policy_used_above_is_valid(tmp_path: Path) -> None:
    assert isinstance(check(tmp_path, dump(VALID)), Policy)
