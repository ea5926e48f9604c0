"""The disposable engine helper: its own daemons, isolated from the shared engine."""

from __future__ import annotations

import subprocess

from tests.integration.conftest import docker
from tests.integration.engines import disposable_engine


def test_disposable_engine_is_isolated_and_survives_a_dockerd_kill(app_image: str) -> None:
    with disposable_engine(experimental=False, live_restore=True) as engine:
        root_dir = engine.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip()
        assert str(engine.data_root) == root_dir
        assert (
            "false"
            == engine.docker("version", "--format", "{{.Server.Experimental}}").stdout.strip()
        )

        engine.load_image(app_image)
        engine.docker("run", "-d", "--network", "none", "--name", "sys-engine-probe", app_image)
        probe = engine.docker("inspect", "--format", "{{.Id}}", "sys-engine-probe").stdout.strip()
        # The shared containerd never hears of the disposable engine's containers.
        assert probe not in _shared_containerd_containers()
        engine.kill_dockerd()
        assert engine.dockerd_pid is None
        engine.start_dockerd()
        state = engine.docker("inspect", "--format", "{{.State.Running}}", "sys-engine-probe")
        assert "true" == state.stdout.strip()
        root = engine.root

    assert not root.exists()
    assert "sys-engine-probe" not in docker("ps", "-a", "--format", "{{.Names}}").stdout


def _shared_containerd_containers() -> str:
    """Return `ctr containers ls` of the shared containerd, every namespace."""
    namespaces = subprocess.run(["ctr", "namespaces", "ls", "-q"], capture_output=True, text=True)
    listings = (
        subprocess.run(
            ["ctr", "-n", name, "containers", "ls", "-q"], capture_output=True, text=True
        )
        for name in namespaces.stdout.split()
    )
    return "".join(listing.stdout for listing in listings)
