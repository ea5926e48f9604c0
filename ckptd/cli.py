"""The `ckptd` command: the daemon and the operator's tools."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from prometheus_client import CollectorRegistry

from ckptd import __version__, retention_cli
from ckptd.catalog import FILENAME as CATALOG_FILE
from ckptd.catalog import Catalog, CheckpointRecord
from ckptd.checkpointer import Checkpointer
from ckptd.discovery import bind_targets
from ckptd.engine import Engine
from ckptd.errors import CkptdError, ContainerNotFoundError, PolicyError
from ckptd.exitcodes import ExitCode, exit_code_for
from ckptd.inventory import container_checkpoints
from ckptd.logs import configure_logging
from ckptd.metrics import Metrics
from ckptd.policy import DaemonSettings, Policy, load_policy, summarize_policy
from ckptd.progress import Spinner
from ckptd.restorecli import STORE_COMMANDS, add_store_commands

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

    status = commands.add_parser(
        "status", help="ask the running daemon for each target's last and next checkpoint"
    )
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the daemon's policy, to find its control socket",
    )
    where.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help=f"the control socket (default {DaemonSettings().control_socket})",
    )
    status.add_argument("--json", action="store_true", help="print JSON for machines")

    doctor = commands.add_parser(
        "doctor", help="check the engine, CRIU, runc and kernel; exit non-zero if not usable"
    )
    doctor.add_argument("--json", action="store_true", help="print JSON for machines")
    retention_cli.add_parsers(commands)
    add_store_commands(commands)
    # So that an error found after the subcommand shows that subcommand's usage (parse_command).
    parser.set_defaults(command_parsers=commands.choices)
    return parser


def parse_command(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Return the parsed command line; exit 2 with the subcommand's usage on a stray argument.

    argparse reports arguments no parser took from the top-level parser, whose usage line says
    nothing about the subcommand that was given them.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")

    return args


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
        targets = [policy.target(args.target)] if args.target else policy.targets
        pairs = [(t.name, t.container) for t in bind_targets(engine, targets, running=False)]
    else:
        pairs = [(args.target, c.name) for c in engine.containers()]

    with ExitStack() as stack:
        state_dir = settings.state_dir
        if not args.config and not (state_dir / CATALOG_FILE).exists():
            # No daemon keeps a catalog there: list from the engine's names alone, in a scratch
            # catalog, rather than create ckptd's state folder from a command that only reads.
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ckptd-")))

        missing = _print_listing(Catalog(state_dir), engine, pairs)

    return EXIT_FAILURE if missing else 0


def _print_listing(
    catalog: Catalog, engine: Engine, pairs: Sequence[tuple[str | None, str]]
) -> int:
    """Print the checkpoints of each (target, container); return how many containers are gone."""
    missing = 0
    print(f"{'TARGET':<16} {'CONTAINER':<24} {'CREATED (UTC)':<21} {'SIZE (MiB)':>10} NAME")
    for target, container in pairs:
        # One container gone (docker rm) must not hide every other target's checkpoints.
        try:
            records = container_checkpoints(catalog, engine, container, target)
        except ContainerNotFoundError as error:
            print(f"ckptd: target {target!r} skipped: {error}", file=sys.stderr)
            missing += 1
            continue

        _print_checkpoints(container, records)

    return EXIT_FAILURE if missing else 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Checkpoint one target now, with the daemon's naming and pruning."""
    policy: Policy = load_policy(args.config)
    configure_logging(policy.daemon.log_level)
    target = policy.target(args.target)
    engine = Engine()
    engine.require_ready()
    catalog = Catalog(policy.daemon.state_dir)
    checkpointer = Checkpointer(engine, Metrics(CollectorRegistry()), catalog, daemon=policy.daemon)
    bound = bind_targets(engine, [target], running=True)
    if not bound:
        raise CkptdError(f"no running container matches target {target.name!r}")

    for each in bound:
        with Spinner(f"checkpoint of {each.name} ({each.container})"):
            result = checkpointer.run(each, origin="cli")
        print(result.checkpoint)

    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print what the running daemon reports; fail clearly when none runs."""
    from ckptd.control import query
    from ckptd.status import render_status

    path = args.socket or DaemonSettings().control_socket
    if args.config:
        path = load_policy(args.config).daemon.control_socket

    answer = query(path, "status")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"ckptd (pid {answer['pid']}) running {answer['policy']}")
        print(render_status(answer))

    return ExitCode.OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check that this host can checkpoint; exit 3 without an engine, 1 on any failure."""
    from ckptd.doctor import render_report, run_doctor

    report = run_doctor()
    print(json.dumps(report.as_json(), indent=2) if args.json else render_report(report))
    if not report.engine_reachable:
        return ExitCode.ENGINE_UNAVAILABLE

    return ExitCode.OK if report.ok else ExitCode.FAILED


COMMANDS = {
    "check-config": cmd_check_config,
    "run": cmd_run,
    "list": cmd_list,
    "checkpoint": cmd_checkpoint,
    "status": cmd_status,
    "doctor": cmd_doctor,
    **retention_cli.COMMANDS,
    **STORE_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parse_command(build_parser(), argv)
    # Until a command sets the policy's level: warnings only, and on stderr, so that nothing
    # logged (a catalog created on first use, say) mixes with what a command prints.
    configure_logging("warning")
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
    except BrokenPipeError:
        # The reader went away (`ckptd list | head -1`): say nothing more, as Unix tools do.
        # Python would report the pipe again when it flushes stdout at exit; point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
