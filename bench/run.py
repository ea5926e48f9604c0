"""ckptd's benchmark suite: every way of checkpointing the example app, side by side.

    .venv/bin/python bench/run.py                      # 16 MiB, 256 MiB, 1 GiB; 3 runs each
    .venv/bin/python bench/run.py --sizes 4 --runs 1 --fleet 3 --out /tmp/b.json   # tiny

Prints a table (median [min-max] of the runs) with the ratios the targets are set in, and
writes every raw figure to a JSON file. Run it on a quiet machine: the load average at the
start and the end is printed and recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import one_round, remove_fleet, start_fleet  # noqa: E402
from methods import (  # noqa: E402
    APP_BINARY,
    ROOT,
    DockerApp,
    PlainApp,
    PodmanApp,
    Sample,
    sh,
)

from ckptd.engine import Engine  # noqa: E402
from ckptd.logs import configure_logging  # noqa: E402

CHECKPOINTS = ["docker_api", "ckptd_docker", "ckptd_runc", "runc_direct", "criu_plain", "podman"]
CHECKPOINTS += ["ckptd_runc_store", "podman_export_zstd"]
RESTORES = ["docker_start_api_made", "docker_start_runc_made", "podman_restore"]
RESTORES += ["ckptd_restore_store", "podman_import_restore"]
# The unmeasured first checkpoint of each app (see bench/methods.py), kept in the JSON.
WARM_UPS = ["warm_up_docker", "warm_up_plain", "warm_up_podman"]
LABELS = {
    "docker_api": "Docker API (checkpoint create --leave-running)",
    "ckptd_docker": "ckptd, engine docker",
    "ckptd_runc": "ckptd, engine runc",
    "ckptd_runc_store": "ckptd, engine runc, kept in its store",
    "ckptd_restore_store": "ckptd restore --force (from its store)",
    "runc_direct": "runc checkpoint by hand",
    "criu_plain": "criu dump, plain process",
    "podman": "Podman checkpoint --leave-running",
    "docker_start_api_made": "docker start --checkpoint (API-made)",
    "docker_start_runc_made": "docker start --checkpoint (runc-made)",
    "podman_restore": "podman container restore",
    "podman_export_zstd": "Podman checkpoint --export --compress zstd",
    "podman_import_restore": "podman container restore --import",
}


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def summary(values: list[float | None]) -> dict[str, float] | None:
    """Return the median, min and max of the values that were measured."""
    measured = [v for v in values if v is not None]
    if not measured:
        return None

    return {
        "median": round(statistics.median(measured), 4),
        "min": round(min(measured), 4),
        "max": round(max(measured), 4),
        "n": len(measured),
    }


def bench_size(image: str, table_mb: int, runs: int, podman: bool) -> dict[str, list[Sample]]:
    """Checkpoint and restore the app of ``table_mb`` MiB every way, ``runs`` times."""
    samples: dict[str, list[Sample]] = {key: [] for key in CHECKPOINTS + RESTORES + WARM_UPS}
    app = DockerApp(image, table_mb)
    samples["warm_up_docker"].append(app.warm_up)
    try:
        for run in range(runs):
            print(f"  {table_mb} MiB run {run + 1}/{runs}", flush=True)
            api_name = f"bench-api-{run}"
            samples["docker_api"].append(app.docker_api(api_name))
            for engine in ("docker", "runc"):
                sample, name = app.ckptd(engine, f"bench{engine}")
                samples[f"ckptd_{engine}"].append(sample)
                app.remove_checkpoint(name)
            sample, stored = app.ckptd("runc", "benchstore", store="store")
            samples["ckptd_runc_store"].append(sample)
            samples["ckptd_restore_store"].append(app.ckptd_restore("benchstore", stored))
            app.remove_checkpoint(stored)
            runc_name = f"bench-runc-{run}"
            samples["runc_direct"].append(app.runc_direct(runc_name))
            samples["docker_start_api_made"].append(app.restore(api_name))
            # The same engine path as an API-made one: once shows it restores; the median of the
            # way ckptd restores is the ckptd restore row.
            if run == 0:
                samples["docker_start_runc_made"].append(app.restore(runc_name))

            app.remove_checkpoint(api_name)
            app.remove_checkpoint(runc_name)
    finally:
        app.remove()

    plain = PlainApp(table_mb, port=18000 + table_mb % 1000)
    samples["warm_up_plain"].append(plain.warm_up)
    try:
        samples["criu_plain"] = [plain.checkpoint() for _ in range(runs)]
    finally:
        plain.remove()

    if podman:
        pod = PodmanApp(image, table_mb)
        samples["warm_up_podman"].append(pod.warm_up)
        try:
            archive = Path(tempfile.mkdtemp(prefix="perf-bench-")) / "checkpoint.tar.zst"
            for _ in range(runs):
                samples["podman"].append(pod.checkpoint())
                samples["podman_restore"].append(pod.restore())
                samples["podman_export_zstd"].append(pod.checkpoint(export=archive))
                samples["podman_import_restore"].append(pod.restore_import(archive))
                archive.unlink()
            archive.parent.rmdir()
        finally:
            pod.remove()

    return samples


def size_figures(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    """Return the summaries of one size: per method wall, frozen, CRIU frozen, size, phases."""
    figures: dict[str, Any] = {}
    for key, rows in samples.items():
        phases = sorted({p for row in rows for p in row.phases})
        figures[key] = {
            "wall_s": summary([r.wall_s for r in rows]),
            "frozen_s": summary([r.frozen_s for r in rows]),
            "criu_frozen_s": summary([r.criu_frozen_s for r in rows]),
            "size_bytes": summary([r.size_bytes for r in rows]),
            "phases_s": {p: summary([r.phases.get(p) for r in rows]) for p in phases},
            "raw": [r.__dict__ for r in rows],
        }

    return figures


def median(figures: dict[str, Any], key: str, field: str) -> float | None:
    """Return one median, or None when it was not measured."""
    found = figures.get(key, {}).get(field)
    return None if found is None else float(found["median"])


def ratio(top: float | None, bottom: float | None) -> float | None:
    """Return top / bottom, or None when either is missing."""
    return None if top is None or not bottom else round(top / bottom, 2)


def ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    """Return the ratios the targets are stated in."""
    return {
        "runc_freeze_vs_podman": ratio(
            median(figures, "ckptd_runc", "frozen_s"), median(figures, "podman", "frozen_s")
        ),
        "runc_criu_frozen_vs_podman": ratio(
            median(figures, "ckptd_runc", "criu_frozen_s"),
            median(figures, "podman", "criu_frozen_s"),
        ),
        "runc_total_vs_podman": ratio(
            median(figures, "ckptd_runc", "wall_s"), median(figures, "podman", "wall_s")
        ),
        "restore_vs_podman": ratio(
            median(figures, "ckptd_restore_store", "wall_s"),
            median(figures, "podman_restore", "wall_s"),
        ),
        "overhead_docker": ratio(
            median(figures, "ckptd_docker", "wall_s"), median(figures, "docker_api", "wall_s")
        ),
        "overhead_runc": ratio(
            median(figures, "ckptd_runc", "wall_s"), median(figures, "runc_direct", "wall_s")
        ),
    }


# The targets of the performance issue, as (ratio, limit, what).
TARGETS = (
    ("runc_freeze_vs_podman", 1.1, "runc freeze <= 1.1 x Podman's"),
    ("runc_total_vs_podman", 1.5, "runc total <= 1.5 x Podman's"),
    ("restore_vs_podman", 3.0, "ckptd restore <= 3 x Podman's"),
    ("overhead_docker", 1.05, "ckptd/API <= 1.05"),
    ("overhead_runc", 1.05, "ckptd/runc <= 1.05"),
)


def verdicts(ratios_: dict[str, float | None]) -> str:
    """Return each target with its ratio and whether it is met."""
    shown = []
    for key, limit, what in TARGETS:
        value = ratios_.get(key)
        verdict = "not measured" if value is None else "met" if value <= limit else "NOT met"
        shown.append(f"{what}: {value} {verdict}")

    return "; ".join(shown)


def cell(summary_: dict[str, float] | None, scale: float = 1.0, digits: int = 2) -> str:
    """Return "median [min-max]" for a table."""
    if summary_ is None:
        return "-"

    m, lo, hi = (summary_[k] / scale for k in ("median", "min", "max"))
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def print_table(result: dict[str, Any]) -> None:
    """Print the per-size tables, the ratios and the fleet figures as Markdown."""
    for size, figures in result["sizes"].items():
        print(f"\n### {size} MiB\n")
        print("| path | checkpoint s | app frozen s | CRIU frozen s | size MiB | restore s |")
        print("| --- | --- | --- | --- | --- | --- |")
        restore_of = {
            "docker_api": "docker_start_api_made",
            "runc_direct": "docker_start_runc_made",
        }
        restore_of |= {"podman": "podman_restore"}
        restore_of |= {"podman_export_zstd": "podman_import_restore"}
        restore_of |= {"ckptd_runc_store": "ckptd_restore_store"}
        for key in CHECKPOINTS:
            f = figures[key]
            restore = figures.get(restore_of.get(key, ""), {}).get("wall_s")
            print(
                f"| {LABELS[key]} | {cell(f['wall_s'])} | {cell(f['frozen_s'])} | "
                f"{cell(f['criu_frozen_s'], digits=3)} | {cell(f['size_bytes'], 2**20, 0)} | "
                f"{cell(restore)} |"
            )
        phased = (
            ("docker_api", "Docker API checkpoint"),
            ("docker_start_api_made", "docker start --checkpoint"),
            ("ckptd_restore_store", "ckptd restore"),
        )
        for key, what in phased:
            phases = figures[key]["phases_s"]
            if phases:
                shown = ", ".join(f"{p.removesuffix('_s')} {cell(s)}" for p, s in phases.items())
                print(f"\n{what} phases (s): {shown}")
        print("\nratios: " + ", ".join(f"{k} {v}" for k, v in result["ratios"][size].items()))
        print("targets: " + verdicts(result["ratios"][size]))

    if result.get("fleet"):
        print("\n### fleet\n")
        print(
            "| engine | max_concurrent | jitter s | containers | round s | ideal s | round/ideal "
            "| lateness p50 s | p99 s | RSS idle/peak MB | CPU idle % | CPU load % |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for f in result["fleet"]:
            print(
                f"| {f['engine']} | {f['concurrency']} | {f['jitter_s']} | {f['containers']} | "
                f"{f['round_s']} | "
                f"{f['ideal_round_s']} | {f['round_vs_ideal']} | {f['lateness_p50_s']} | "
                f"{f['lateness_p99_s']} | {f['idle_rss_mb']}/{f['peak_rss_mb']} | "
                f"{f['idle_cpu_percent']} | {f['load_cpu_percent']} |"
            )
    if result.get("retention"):
        print(f"\n### retention\n\n{result['retention'].get('output', '').strip()}")
    print(f"\nload average: start {result['load_start']}, end {result['load_end']}")


def rebase_ideals(rows: list[dict[str, Any]]) -> None:
    """Measure each burst round against N x the median checkpoint at max_concurrent 1 / c.

    The checkpoints of a concurrent round each take longer on two cores, so an ideal made of
    their own times would hide what concurrency costs; the single-slot median does not.
    """
    for row in rows:
        single = [
            r["median_checkpoint_s"]
            for r in rows
            if r["engine"] == row["engine"] and r["concurrency"] == 1 and r["median_checkpoint_s"]
        ]
        if not single or not row["round_s"]:
            continue

        row["own_ideal_round_s"] = row["ideal_round_s"]
        row["ideal_round_s"] = round(row["containers"] * single[0] / row["concurrency"], 2)
        row["round_vs_ideal"] = round(row["round_s"] / row["ideal_round_s"], 2)


def retention_bench(count: int) -> dict[str, Any]:
    """Run the retention planning benchmark (bench/bench_retention.py), when it exists."""
    script = Path(__file__).resolve().parent / "bench_retention.py"
    if not script.is_file():
        return {"output": "bench/bench_retention.py is not there yet", "returncode": None}

    answer = subprocess.run(
        [sys.executable, str(script), "--count", str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    best = re.search(r"best ([0-9.]+) s", answer.stdout)
    return {
        "output": answer.stdout + answer.stderr,
        "returncode": answer.returncode,
        "best_s": float(best[1]) if best else None,
    }


def preflight(podman: bool) -> None:
    """Fail early, saying what is missing."""
    if not APP_BINARY.is_file():
        raise SystemExit(f"{APP_BINARY} is missing: run examples/cpp-app/build.sh")

    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin"
    missing = [tool for tool in ("docker", "criu", "runc") if not shutil.which(tool, path=path)]
    if podman and not shutil.which("podman"):
        missing.append("podman (apt-get install podman, or --no-podman)")

    if missing:
        raise SystemExit("missing: " + ", ".join(missing))


def main() -> int:
    """Run the suite; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,256,1024", help="MiB of state, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fleet", type=int, default=100, help="containers in the fleet (0: none)")
    parser.add_argument("--fleet-concurrency", default="1,2,4")
    parser.add_argument("--fleet-engines", default="runc", help="engines, comma-separated")
    parser.add_argument("--fleet-every", type=int, default=12, help="seconds between rounds")
    parser.add_argument(
        "--fleet-steady",
        default="runc:2",
        help="ENGINE:MAX_CONCURRENT runs with jitter = interval - 1 s, comma-separated ('' none)",
    )
    parser.add_argument("--retention-count", type=int, default=100_000)
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--image", default=os.environ.get("IMAGE", "ckptd-example-app:latest"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()

    podman = not args.no_podman
    configure_logging("warning")
    preflight(podman)
    status = Engine().require_ready()
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_start": load_average(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "docker": status.version},
        "versions": {
            "criu": sh("criu", "--version").stdout.split("\n")[0],
            "runc": sh("runc", "--version").stdout.split("\n")[0],
            "podman": sh("podman", "--version").stdout.strip() if podman else None,
        },
        "sizes": {},
        "ratios": {},
    }
    print(f"load average at start: {result['load_start']}", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        figures = size_figures(bench_size(args.image, size, args.runs, podman))
        result["sizes"][str(size)] = figures
        result["ratios"][str(size)] = ratios(figures)

    if args.fleet:
        print(f"  fleet of {args.fleet}", flush=True)
        names = start_fleet(args.image, args.fleet)
        try:
            result["fleet"] = [
                one_round(names, int(c), args.fleet_every, engine)
                for engine in args.fleet_engines.split(",")
                for c in args.fleet_concurrency.split(",")
            ]
            rebase_ideals(result["fleet"])
            for steady in filter(None, args.fleet_steady.split(",")):
                engine, _, c = steady.partition(":")
                every = args.fleet_every * 2
                # A jitter must stay shorter than the interval (check-config refuses it).
                result["fleet"].append(one_round(names, int(c), every, engine, jitter_s=every - 1))
        finally:
            remove_fleet(names)

    result["retention"] = retention_bench(args.retention_count)
    result["load_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    tables = io.StringIO()
    with contextlib.redirect_stdout(tables):
        print_table(result)

    print(tables.getvalue(), end="")
    if args.markdown:
        args.markdown.write_text(tables.getvalue())

    print(f"\nraw figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
