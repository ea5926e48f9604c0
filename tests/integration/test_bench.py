"""bench/run.py runs the whole suite on tiny sizes: every path measured, a table and a JSON file.

A benchmark, not a timed test: only that each figure was measured is checked, never its value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import IMAGE, ROOT

CHECKPOINT_PATHS = ["docker_api", "ckptd_docker", "ckptd_runc", "runc_direct", "criu_plain"]
CHECKPOINT_PATHS += ["ckptd_runc_store"]


def test_the_suite_runs_on_tiny_sizes(app_image: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "2", "--runs", "1"]
    command += ["--fleet", "2", "--fleet-every", "5", "--fleet-concurrency", "1"]
    command += ["--fleet-engines", "runc", "--fleet-steady", ""]
    command += ["--retention-count", "1000", "--image", IMAGE, "--out", str(out)]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)

    assert 0 == answer.returncode, answer.stdout + answer.stderr
    assert "| ckptd, engine runc |" in answer.stdout
    assert "load average: start " in answer.stdout
    result = json.loads(out.read_text())
    figures = result["sizes"]["2"]
    for path in [*CHECKPOINT_PATHS, "podman", "podman_export_zstd"]:
        assert figures[path]["wall_s"]["n"] == 1, path
        assert figures[path]["frozen_s"] is not None, path
        assert figures[path]["size_bytes"]["median"] > 2 * 2**20, path

    for path in ["ckptd_runc", "runc_direct", "criu_plain", "podman"]:
        assert figures[path]["criu_frozen_s"]["median"] > 0, path

    restores = ["docker_start_api_made", "docker_start_runc_made", "podman_restore"]
    for path in [*restores, "ckptd_restore_store", "podman_import_restore"]:
        assert figures[path]["wall_s"]["median"] > 0, path

    assert set(result["ratios"]["2"]) >= {"runc_freeze_vs_podman", "overhead_docker"}
    [fleet] = result["fleet"]
    assert (2, 0) == (fleet["checkpoints_done"], fleet["checkpoints_failed"])
    assert fleet["idle_rss_mb"] > 0 and fleet["lateness_p99_s"] is not None
    assert result["retention"]["best_s"] > 0, result["retention"]["output"]
