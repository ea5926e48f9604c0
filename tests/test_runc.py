"""Finding runc's state for a container from what the engine reports, and refusing guesses.

The /proc and shim files are laid out under tmp_path as Linux and containerd lay them out; the
real engine is exercised in tests/integration/test_runc_engine.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ckptd.engine import RuntimeFacts
from ckptd.runc import RuncStateNotFoundError, locate

CONTAINER = "c0ffee" * 10 + "abcd"
PID, SHIM = 4242, 4200


def fake_runtime(tmp_path: Path, says: str = "runc version 1.1.5") -> Path:
    """Return an executable that answers --version like ``says``."""
    binary = tmp_path / "bin" / "runc"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\necho '{says}'\n")
    binary.chmod(0o755)
    return binary


def lay_out(tmp_path: Path, state_pid: int = PID, options: dict | None = None) -> RuntimeFacts:
    """Lay out /proc, the shim's bundle, runc's state and Docker's folder; return the facts."""
    proc, bundle = tmp_path / "proc", tmp_path / "task" / "moby" / CONTAINER
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(SHIM)).mkdir()
    bundle.mkdir(parents=True)
    # The command of pid 4242 has a space and a parenthesis, as a hostile one might.
    (proc / str(PID) / "stat").write_text(f"{PID} (a) b) S {SHIM} {PID} {PID} 0 -1\n")
    args = ["containerd-shim-runc-v2", "-namespace", "moby", "-id", CONTAINER]
    (proc / str(SHIM) / "cmdline").write_bytes("\0".join(args).encode() + b"\0")
    os.symlink(bundle, proc / str(SHIM) / "cwd")
    root = tmp_path / "runtime-runc"
    chosen = {"binary_name": str(fake_runtime(tmp_path)), "root": str(root)}
    (bundle / "options.json").write_text(json.dumps(chosen if options is None else options))
    (root / "moby" / CONTAINER).mkdir(parents=True)
    state = {"id": CONTAINER, "init_process_pid": state_pid}
    (root / "moby" / CONTAINER / "state.json").write_text(json.dumps(state))
    (tmp_path / "docker" / "containers" / CONTAINER).mkdir(parents=True)
    return RuntimeFacts(CONTAINER, PID, "runc", "runc", str(tmp_path / "docker"))


def test_the_shim_bundle_names_runc_and_its_state_root(tmp_path: Path) -> None:
    found = locate(lay_out(tmp_path), proc=tmp_path / "proc")

    assert CONTAINER == found.id
    assert str(tmp_path / "bin" / "runc") == found.binary
    assert tmp_path / "runtime-runc" / "moby" == found.root
    assert tmp_path / "docker" / "containers" / CONTAINER / "checkpoints" == found.checkpoint_dir


def test_a_state_naming_another_init_pid_is_refused(tmp_path: Path) -> None:
    facts = lay_out(tmp_path, state_pid=999)

    with pytest.raises(RuncStateNotFoundError, match="names init pid 999, the engine 4242"):
        locate(facts, proc=tmp_path / "proc")


def test_a_runtime_that_is_not_runc_is_refused(tmp_path: Path) -> None:
    facts = lay_out(tmp_path)
    fake = tmp_path / "bin" / "runc"
    fake.write_text("#!/bin/sh\necho 'crun version 1.8.1'\n")
    (tmp_path / "bin" / "crun").symlink_to(fake)
    options = {"binary_name": str(tmp_path / "bin" / "crun"), "root": "/x"}
    bundle = tmp_path / "task" / "moby" / CONTAINER
    (bundle / "options.json").write_text(json.dumps(options))

    with pytest.raises(RuncStateNotFoundError, match="is not runc"):
        locate(facts, proc=tmp_path / "proc")


def test_a_container_without_a_shim_bundle_is_refused(tmp_path: Path) -> None:
    facts = lay_out(tmp_path)
    (tmp_path / "task" / "moby" / CONTAINER / "options.json").unlink()

    with pytest.raises(RuncStateNotFoundError, match="no containerd shim bundle for pid 4242"):
        locate(facts, proc=tmp_path / "proc")


def test_a_stopped_container_is_refused(tmp_path: Path) -> None:
    facts = RuntimeFacts(CONTAINER, 0, "runc", "runc", str(tmp_path))

    with pytest.raises(RuncStateNotFoundError, match="no running init process"):
        locate(facts, proc=tmp_path / "proc")


def test_missing_state_is_refused_naming_the_file(tmp_path: Path) -> None:
    facts = lay_out(tmp_path)
    state = tmp_path / "runtime-runc" / "moby" / CONTAINER / "state.json"
    state.unlink()

    with pytest.raises(RuncStateNotFoundError, match=f"cannot read {state}"):
        locate(facts, proc=tmp_path / "proc")
