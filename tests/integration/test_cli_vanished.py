"""A target whose container is gone (docker rm) must not hide the other targets' checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import AppContainer, free_port, run_ckptd, write_policy


def two_target_policy(tmp_path: Path, app: AppContainer) -> Path:
    """Return a policy with target `it` on the app and target `gone` on no container at all."""
    path = write_policy(tmp_path / "policy.yaml", app.name, free_port())
    path.write_text(
        path.read_text()
        + "  - name: gone\n"
        + f"    container: {app.name}-removed\n"
        + "    schedule: {every: 1h}\n"
    )
    path.chmod(0o600)
    return path


def test_list_and_prune_show_the_rest_and_name_the_missing_container(
    app: AppContainer, tmp_path: Path
) -> None:
    policy = two_target_policy(tmp_path, app)
    made = run_ckptd("checkpoint", "--config", str(policy), "it")
    assert 0 == made.returncode, made.stderr
    name = made.stdout.split()[-1]

    listed = run_ckptd("list", "--config", str(policy))
    planned = run_ckptd("prune", "--config", str(policy), "--dry-run", "--json")

    assert 1 == listed.returncode
    assert name in listed.stdout
    assert f"target 'gone' skipped: container '{app.name}-removed' not found" in listed.stderr
    assert 1 == planned.returncode
    document = json.loads(planned.stdout)
    assert ["it"] == [report["target"] for report in document["targets"]]
    assert ["gone"] == [skip["target"] for skip in document["skipped"]]
    assert name in {row["name"] for row in document["targets"][0]["checkpoints"]}
