"""The operator's commands around the store: restore, export, inspect, import."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ckptd.archive import (
    check_output,
    describe_manifest,
    export_entry,
    import_archive,
    read_manifest,
)
from ckptd.catalog import Catalog
from ckptd.checkpointer import default_lock_dir
from ckptd.engine import Engine
from ckptd.errors import CkptdError, ContainerNotFoundError, UsageError
from ckptd.locks import container_lock
from ckptd.logs import configure_logging
from ckptd.policy import DURATION_FORMS, Policy, load_policy, parse_duration, store_location
from ckptd.restore import Restorer, RestoreRequest, RestoreResult
from ckptd.store import Store

DEFAULT_POLICY = Path("/etc/ckptd/policy.yaml")


def add_store_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add restore, export, inspect and import to the ``ckptd`` parser."""
    restore = commands.add_parser(
        "restore", help="restore a target's container from a stored checkpoint"
    )
    _add_config(restore)
    restore.add_argument("target", metavar="TARGET", help="a target, or a container's name")
    restore.add_argument("--checkpoint", default="latest", metavar="NAME|latest")
    restore.add_argument("--force", action="store_true", help="stop a running container first")
    restore.add_argument("--into", metavar="NAME", help="restore into a new container NAME")
    restore.add_argument(
        "--timeout", default="5m", type=restore_timeout, metavar="DUR", help="give up after (5m)"
    )

    export = commands.add_parser("export", help="write a stored checkpoint to a .tar.zst file")
    _add_config(export)
    export.add_argument("target", metavar="TARGET")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="a name, or latest")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tar.zst")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    inspect = commands.add_parser("inspect", help="show what an exported checkpoint holds")
    inspect.add_argument("file", type=Path, metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print the whole manifest")

    imported = commands.add_parser("import", help="add an exported checkpoint to the store")
    _add_config(imported)
    imported.add_argument("file", type=Path, metavar="FILE")


def restore_timeout(text: str) -> float:
    """Return the seconds ``--timeout`` names; raise ArgumentTypeError (bad usage) otherwise."""
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error

    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} leaves the restore no time; expected a duration longer than zero, "
            f"{DURATION_FORMS}"
        )

    return seconds


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_POLICY, metavar="FILE")


def _store_and_container(policy: Policy, name: str) -> tuple[Store | None, str, str]:
    """Return the store (None: the engine's), container and target of target ``name``.

    A name that is no target's is taken as a container's, with the daemon's store.
    """
    for target in policy.targets:
        if target.name == name and target.container:
            root = policy.store_for(target)
            return (None if root is None else Store(root)), target.container, target.name

    root = store_location(policy.daemon, None)
    return (None if root is None else Store(root)), name, ""


def _require_known(policy: Policy, path: Path, store: Store | None, name: str) -> None:
    """Raise UsageError when ``name`` is no target and the store has no checkpoint of it.

    Called only for a name that is not one of the policy's targets. Without a store (the daemon
    keeps checkpoints in the engine) the engine is the one to say whether the container exists.
    """
    if store is None or any(
        name in (entry.container_name, entry.container_id) or entry.container_id.startswith(name)
        for entry in store.entries()
    ):
        return

    targets = ", ".join(target.name for target in policy.targets) or "none"
    raise UsageError(
        f"{name!r} is neither a target of the policy {path} (its targets: {targets}) nor a "
        f"container with checkpoints in the store {store.root}"
    )


def _required(store: Store | None, name: str) -> Store:
    """Return ``store``; raise when the target keeps its checkpoints in the engine only."""
    if store is None:
        raise CkptdError(f"{name!r} has store: engine, so ckptd keeps no copy to export or import")

    return store


def _progress(started: float) -> Callable[[str], None]:
    """Return a printer of progress lines on a terminal (stderr); silent when not on one."""
    terminal = sys.stderr.isatty()

    def show(message: str) -> None:
        if not terminal:
            return

        print(f"[{time.monotonic() - started:6.2f}s] {message}…", file=sys.stderr, flush=True)

    return show


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore in place or into a new container; print how long it took."""
    policy = load_policy(args.config)
    configure_logging(policy.daemon.log_level)
    store, container, target = _store_and_container(policy, args.target)

    if not target:
        _require_known(policy, args.config, store, args.target)

    timeout = float(args.timeout)
    engine = Engine()
    engine.require_ready()
    catalog = Catalog(policy.daemon.state_dir)
    restorer = Restorer(engine, store, catalog, _progress(time.monotonic()))
    request = RestoreRequest(
        container, args.checkpoint, args.force, args.into, timeout, target=target
    )

    with _locked(engine, None if args.into else container):
        result = restorer.restore(request)

    print(_summary(result))
    return 0


@contextmanager
def _locked(engine: Engine, container: str | None) -> Iterator[None]:
    """Hold the lock of the container restored in place, as a checkpoint of it does.

    From the stop to the restored process, a checkpoint that falls due waits rather than find
    the container stopped. A restore ``--into`` changes no existing container: no lock.
    """
    try:
        info = None if container is None else engine.container(container)
    except ContainerNotFoundError:
        info = None  # the restore itself says what is missing

    if info is None:
        yield
        return

    with container_lock(default_lock_dir(), info.id):
        yield


def _summary(result: RestoreResult) -> str:
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.3f} s" for k, v in result.phases.items())
    return (
        f"restored {result.checkpoint} into {result.container} (pid {result.pid}) "
        f"in {result.seconds:.2f} s ({phases}; staging by {result.staging})"
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Write one stored checkpoint, manifest first, to a zstd-compressed tar."""
    policy = load_policy(args.config)
    found, container, target = _store_and_container(policy, args.target)
    store = _required(found, args.target)

    if not target:
        _require_known(policy, args.config, store, args.target)

    check_output(args.output, args.force)
    entry = store.find(container, args.checkpoint)
    store.require_intact(entry)
    size = export_entry(entry, args.output, args.force)
    print(f"exported {entry.checkpoint} of {entry.container_name} to {args.output} ({size} bytes)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the manifest of an exported checkpoint."""
    manifest = read_manifest(args.file)
    print(json.dumps(manifest, indent=2) if args.json else describe_manifest(manifest))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Add an exported checkpoint to the daemon's store, checksums verified."""
    policy = load_policy(args.config)
    found, _, _ = _store_and_container(policy, "")
    entry = import_archive(args.file, _required(found, "daemon.store"))
    print(f"imported {entry.checkpoint} of {entry.container_name} into {entry.path}")
    return 0


STORE_COMMANDS = {
    "restore": cmd_restore,
    "export": cmd_export,
    "inspect": cmd_inspect,
    "import": cmd_import,
}
