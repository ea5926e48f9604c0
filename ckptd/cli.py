"""The `ckptd` command: the daemon and the operator's tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from ckptd import __version__
from ckptd.catalog import Catalog, CheckpointRecord
from ckptd.checkpointer import Checkpointer
from ckptd.engine import Engine
from ckptd.errors import CkptdError, PolicyError
from ckptd.exitcodes import ExitCode, exit_code_for
from ckptd.inventory import container_checkpoints
from ckptd.logs import configure_logging
from ckptd.metrics import Metrics
from ckptd.policy import DaemonSettings, Policy, load_policy, summarize_policy
from ckptd.progress import Spinner

DEFAULT_POLICY = Path("/etc/ckptd/policy.yaml")
EXIT_FAILURE = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ckptd", description="Scheduled CRIU checkpoints of Docker containers."
    )
    parser.add_argument("--version", action="version", version=f"ckptd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a policy file and summarise it")
    check.add_argument("file", type=Path, metavar="FILE")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_POLICY, metavar="FILE")

    listing = commands.add_parser("list", help="list ckptd's checkpoints, newest first")
    listing.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="only the policy's targets (default: every container)",
    )
    listing.add_argument("target", nargs="?", metavar="TARGET")

    now = commands.add_parser("checkpoint", help="checkpoint one target now, then prune")
    now.add_argument("--config", type=Path, default=DEFAULT_POLICY, metavar="FILE")
    now.add_argument("target", metavar="TARGET")
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the policy without starting anything."""
    policy = load_policy(args.file)
    print(summarize_policy(policy, args.file))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM."""
    from ckptd.daemon import Daemon  # the scheduler is only needed here

    policy = load_policy(args.config)
    configure_logging(policy.daemon.log_level)
    engine = Engine()
    engine.require_ready()
    return Daemon(args.config, policy, engine).run()


def _print_checkpoints(container: str, records: list[CheckpointRecord]) -> None:
    for record in records:
        size = "-" if record.size_bytes is None else f"{record.size_bytes / 2**20:.1f}"
        print(
            f"{record.target:<16} {container:<24} {record.created:%Y-%m-%d %H:%M:%S}Z  "
            f"{size:>9}  {record.name}"
        )


def cmd_list(args: argparse.Namespace) -> int:
    """Print ckptd's checkpoints per target, newest first, with times and sizes from the catalog."""
    engine = Engine()
    settings = DaemonSettings()
    if args.config:
        policy = load_policy(args.config)
        settings = policy.daemon
        pairs = [(t.name, t.container) for t in policy.targets]
        if args.target:
            pairs = [(policy.target(args.target).name, policy.target(args.target).container)]
    else:
        pairs = [(args.target, c.name) for c in engine.containers()]

    catalog = Catalog(settings.state_dir)
    print(f"{'TARGET':<16} {'CONTAINER':<24} {'CREATED (UTC)':<21} {'SIZE (MiB)':>10} NAME")
    for target, container in pairs:
        _print_checkpoints(container, container_checkpoints(catalog, engine, container, target))

    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Checkpoint one target now, with the daemon's naming and pruning."""
    policy: Policy = load_policy(args.config)
    configure_logging(policy.daemon.log_level)
    target = policy.target(args.target)
    engine = Engine()
    engine.require_ready()
    catalog = Catalog(policy.daemon.state_dir)
    checkpointer = Checkpointer(engine, Metrics(CollectorRegistry()), catalog)
    with Spinner(f"checkpoint of {target.name}"):
        result = checkpointer.run(target, origin="cli")
    print(result.checkpoint)
    return 0


COMMANDS = {
    "check-config": cmd_check_config,
    "run": cmd_run,
    "list": cmd_list,
    "checkpoint": cmd_checkpoint,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PolicyError as error:
        print(f"ckptd: invalid policy {error}", file=sys.stderr)
        return exit_code_for(error)
    except CkptdError as error:
        print(f"ckptd: {error}", file=sys.stderr)
        return exit_code_for(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
