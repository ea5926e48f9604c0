"""The store and restore paths for the example app, timed end to end through the CLI.

    .venv/bin/python bench/bench_store.py                 # TABLE_MB=64 (the app's default)
    .venv/bin/python bench/bench_store.py --table-mb 16 --image ckptd-example-app:latest

Prints how long each step took (checkpoint, storing it, restore in place, restore into a new
container after `docker rm`, export, import) and the staging cost side by side: hard links
against a copy of the same checkpoint files, with the ratio. One run of each restore (they are
seconds long); the staging comparison takes the median of five.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ckptd.store import link_or_copy  # noqa: E402

CKPTD = [str(Path(sys.executable).with_name("ckptd"))]
PHASES = re.compile(r"in ([0-9.]+) s \((.*); staging by (\S+)\)")


def sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    return done


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command; return its wall time and result."""
    started = time.monotonic()
    done = sh(*args)
    return time.monotonic() - started, done


def event(stderr: str, name: str) -> dict[str, object]:
    """Return the last JSON log line of event ``name``."""
    for line in reversed(stderr.splitlines()):
        if f'"event": "{name}"' in line:
            return dict(json.loads(line))

    raise SystemExit(f"no {name} event in:\n{stderr}")


def restore_phases(stdout: str) -> str:
    """Return the phases of a `ckptd restore` summary line."""
    match = PHASES.search(stdout)
    return f"{match[1]} s total; {match[2]}; staging by {match[3]}" if match else stdout.strip()


def staging_side_by_side(images: Path, work: Path, runs: int = 5) -> tuple[float, float]:
    """Return the median seconds to stage ``images`` by hard links and by copying."""
    linked: list[float] = []
    copied: list[float] = []
    for run in range(runs):
        linked.append(link_or_copy(images, work / f"link-{run}").seconds)
        started = time.monotonic()
        shutil.copytree(images, work / f"copy-{run}")
        copied.append(time.monotonic() - started)
        shutil.rmtree(work / f"link-{run}")
        shutil.rmtree(work / f"copy-{run}")

    return statistics.median(linked), statistics.median(copied)


def write_policy(folder: Path, container: str) -> Path:
    """Write a one-target policy with its state and store in ``folder``."""
    policy = folder / "policy.yaml"
    policy.write_text(
        "daemon:\n"
        f"  state_dir: {folder / 'state'}\n"
        f"  control_socket: {folder / 'control.sock'}\n"
        "  metrics_address: 127.0.0.1:9\n"
        "targets:\n"
        "  - name: bench\n"
        f"    container: {container}\n"
        "    schedule: {every: 1h}\n"
    )
    return policy


def main() -> int:
    """Run the steps once and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-mb", type=int, default=64)
    parser.add_argument("--image", default="ckptd-example-app:latest")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ckptd-bench-store-"))
    name = f"store-bench-{uuid.uuid4().hex[:6]}"
    clone = f"{name}-clone"
    rows: list[tuple[str, str]] = []
    try:
        sh(
            "docker", "run", "-d", "--name", name, "--network", "none",
            "-e", "STARTUP_SECONDS=2", "-e", f"TABLE_MB={args.table_mb}",
            "-e", "JOURNAL_FILE=/journal.log", args.image,
        )  # fmt: skip
        time.sleep(4)
        policy = str(write_policy(folder, name))

        took, done = timed(*CKPTD, "checkpoint", "--config", policy, "bench")
        stored = event(done.stderr, "checkpoint_stored")
        rows.append(("ckptd checkpoint (dump + store)", f"{took:.2f} s"))
        rows.append(
            (
                "  storing it, after the app runs again",
                f"staging {stored['staging_s']} s by {stored['staging']}, "
                f"sha256 {stored['checksum_s']} s",
            )
        )

        took, done = timed(*CKPTD, "restore", "--config", policy, "bench", "--force")
        rows.append(
            (
                "ckptd restore --force (in place)",
                f"{took:.2f} s wall; " + restore_phases(done.stdout),
            )
        )

        archive = folder / "bench.tar.zst"
        took, _ = timed(*CKPTD, "export", "--config", policy, "bench", "latest", "-o", str(archive))
        rows.append(("ckptd export", f"{took:.2f} s, {archive.stat().st_size / 2**20:.1f} MiB"))

        sh("docker", "rm", "-f", name)
        entries = list((folder / "state" / "store").glob("*/*/images"))
        linked, copied = staging_side_by_side(entries[0], folder)
        shutil.rmtree(folder / "state" / "store")
        took, _ = timed(*CKPTD, "import", "--config", policy, str(archive))
        rows.append(("ckptd import (checksums verified)", f"{took:.2f} s"))

        took, done = timed(*CKPTD, "restore", "--config", policy, name, "--into", clone)
        rows.append(
            (
                "ckptd restore --into (after docker rm)",
                f"{took:.2f} s wall; " + restore_phases(done.stdout),
            )
        )
        rows.append(
            (
                "staging, hard links vs copy (median of 5)",
                f"{linked * 1000:.2f} ms vs {copied * 1000:.1f} ms: "
                f"copy/link = {copied / linked:.0f}x",
            )
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name, clone], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"example app, TABLE_MB={args.table_mb}, load {os.getloadavg()[0]:.2f}")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")

    return 0


if __name__ == "__main__":
    sys.exit(main())
