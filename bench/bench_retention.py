"""How long plan_retention takes for one target with 100,000 checkpoints (target: under 1 s).

Run: .venv/bin/python bench/bench_retention.py [--count 100000] [--repeats 3]

The checkpoints are five minutes apart (about a year) with sizes of a few MiB; the rules are every
kind at once, read in a time zone with daylight saving, plus a size budget, which is the slowest
case. The machine is shared, so the load average is printed beside the figure.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta

from ckptd.retention import CheckpointRecord, plan_retention

TARGET_S = 1.0
RULES = {
    "keep_last": 5,
    "keep_minutely": 30,
    "keep_hourly": 48,
    "keep_daily": 14,
    "keep_weekly": 8,
    "keep_monthly": "unlimited",
    "keep_yearly": 5,
    "keep_within": "6h",
    "keep_within_hourly": "2d",
    "keep_within_daily": "30d",
    "keep_within_weekly": "3mo",
    "keep_within_monthly": "1y",
    "keep_within_yearly": "10y",
    "timezone": "Europe/Berlin",
    "max_total_size": "2GiB",
}


def make_records(count: int) -> list[CheckpointRecord]:
    """Return `count` checkpoints five minutes apart, newest now, in shuffled order."""
    rng = random.Random(7)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    records = [
        CheckpointRecord(
            f"ckptd-bench-{index:06d}",
            now - timedelta(minutes=5 * index),
            rng.randint(2, 6) * 1024**2,
            pinned=index % 5000 == 0,
        )
        for index in range(count)
    ]
    rng.shuffle(records)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="checkpoints to plan")
    parser.add_argument("--repeats", type=int, default=3, help="plans to time (best is shown)")
    args = parser.parse_args()
    count, repeats = args.count, args.repeats
    records = make_records(count)
    now = datetime(2026, 12, 4, 12, 1, tzinfo=UTC)

    timings, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        plan = plan_retention(records, RULES, now)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)

    best = min(timings)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"checkpoints: {count}, kept {len(plan.keep)}, deleted {len(plan.delete)}")
    print(
        f"plan_retention: best {best:.3f} s of {repeats} (all: "
        + ", ".join(f"{t:.3f}" for t in timings)
        + ")"
    )
    print(f"CPU time of the same plans: best {min(cpu):.3f} s (the machine is shared)")
    print(
        f"target {TARGET_S:.1f} s: ratio {best / TARGET_S:.2f}; load average {load} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
