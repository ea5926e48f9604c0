"""The retention commands: `ckptd prune` (a dry-run table or JSON), `ckptd pin`, `ckptd unpin`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ckptd.catalog import Catalog
from ckptd.checkpointer import Checkpointer
from ckptd.discovery import bind_targets
from ckptd.engine import Engine
from ckptd.errors import CkptdError, ContainerNotFoundError
from ckptd.logs import configure_logging
from ckptd.metrics import Metrics
from ckptd.naming import parse_checkpoint_name
from ckptd.pins import pin, unpin
from ckptd.policy import Policy, Target, load_policy
from ckptd.retention import Decision, RetentionPlan
from ckptd.sizes import format_size

Command = Callable[[argparse.Namespace], int]
DEFAULT_POLICY = Path("/etc/ckptd/policy.yaml")
EXIT_FAILURE = 1


def add_parsers(commands: Any) -> None:
    """Add the parsers of prune, pin and unpin to the `commands` subparsers."""
    prune = commands.add_parser(
        "prune", help="apply retention now; --dry-run shows every decision and its reason"
    )
    prune.add_argument("--config", type=Path, default=DEFAULT_POLICY, metavar="FILE")
    prune.add_argument("target", nargs="?", metavar="TARGET", help="default: every target")
    prune.add_argument("--dry-run", action="store_true", help="decide and explain, delete nothing")
    prune.add_argument("--json", action="store_true", help="print JSON instead of a table")

    for name, verb in (("pin", "never delete"), ("unpin", "let retention decide again on")):
        parser = commands.add_parser(name, help=f"{verb} one checkpoint of a target")
        parser.add_argument("--config", type=Path, default=DEFAULT_POLICY, metavar="FILE")
        parser.add_argument("target", metavar="TARGET")
        parser.add_argument("name", metavar="NAME", help="the checkpoint's name")


def cmd_prune(args: argparse.Namespace) -> int:
    """Plan each target's retention, then print the plan (--dry-run) or apply it."""
    policy = load_policy(args.config)
    configure_logging(policy.daemon.log_level)
    engine = Engine()
    chosen = [policy.target(args.target)] if args.target else policy.targets
    # Stopped containers count too: their checkpoints are pruned like any others.
    targets = bind_targets(engine, chosen, running=False)
    catalog = Catalog(policy.daemon.state_dir)
    checkpointer = Checkpointer(engine, Metrics(CollectorRegistry()), catalog, daemon=policy.daemon)

    reports: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    failed = False

    for target in targets:
        # One container gone (docker rm) must not hide every other target's plan.
        try:
            if args.dry_run:
                container = engine.container(target.container)
                plan = checkpointer.pruner.plan(target, container, datetime.now(UTC))
                deleted: list[str] = []
            else:
                outcome = checkpointer.prune(target)
                plan, deleted = outcome.plan, outcome.deleted
                failed = failed or bool(outcome.failed)
        except ContainerNotFoundError as error:
            skipped.append(
                {"target": target.name, "container": target.container, "why": str(error)}
            )
            print(f"ckptd: target {target.name!r} skipped: {error}", file=sys.stderr)
            failed = True
            continue

        reports.append(_report(target, plan, deleted, args.dry_run))

    if args.json:
        document = {"dry_run": args.dry_run, "targets": reports, "skipped": skipped}
        print(json.dumps(document, indent=2))
    else:
        for report in reports:
            print(render_report(report))

    return EXIT_FAILURE if failed else 0


def _report(
    target: Target, plan: RetentionPlan, deleted: list[str], dry_run: bool
) -> dict[str, Any]:
    """Return one target's plan (and, when applied, what was deleted) as plain data."""
    return {
        "target": target.name,
        "container": target.container,
        "retention": target.retention.describe(),
        "kept_bytes": plan.kept_bytes(),
        "budget_unmet": plan.unmet,
        "checkpoints": [_decision(decision) for decision in plan.decisions()],
        "deleted": None if dry_run else deleted,
    }


def _decision(decision: Decision) -> dict[str, Any]:
    record = decision.record
    return {
        "name": record.name,
        "created": record.created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "size_bytes": record.size_bytes,
        "action": "keep" if decision.keep else "delete",
        "reasons": list(decision.reasons),
        "rules": list(decision.rules),
        "origin": str(record.origin),
        "pinned": record.pinned,
    }


def render_report(report: dict[str, Any]) -> str:
    """Return one target's report as a table: checkpoint, time, size, kept/deleted, why."""
    rows = [
        (
            row["name"],
            _seconds(row["created"]),
            format_size(row["size_bytes"]),
            "kept" if row["action"] == "keep" else "deleted",
            _why(row),
        )
        for row in report["checkpoints"]
    ]
    header = ("CHECKPOINT", "TIME (UTC)", "SIZE", "ACTION", "WHY")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        f"target {report['target']} (container {report['container']}): {report['retention']}; "
        f"{format_size(report['kept_bytes'])} kept"
    ]
    lines += [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines += [f"budget not met: {budget}" for budget in report["budget_unmet"]]

    if report["deleted"] is not None:
        lines += [f"deleted {name}" for name in report["deleted"]] or ["deleted nothing"]

    return "\n".join(lines) + "\n"


def _seconds(created: str) -> str:
    """Return an ISO time as the table shows it, to the second: "2026-12-04 11:30:00Z"."""
    return datetime.fromisoformat(created).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _why(row: dict[str, Any]) -> str:
    """Return the reasons for one row; a budget deletion also says which rules had kept it."""
    why = ", ".join(row["reasons"])

    if row["action"] == "delete" and row["rules"]:
        why += f" (rules: {', '.join(row['rules'])})"

    return why


def cmd_pin(args: argparse.Namespace) -> int:
    """Pin one of a target's checkpoints that exists on the engine."""
    policy, target = _policy_target(args)
    ref = parse_checkpoint_name(args.name)

    if ref is None or ref.target != target.name:
        raise CkptdError(f"{args.name!r} is not a checkpoint name of target {target.name!r}")

    engine = Engine()
    containers = [
        engine.container(each.container) for each in bind_targets(engine, [target], running=False)
    ]

    if not any(args.name in engine.list_checkpoints(c.id) for c in containers):
        where = ", ".join(repr(c.name) for c in containers) or "no container"
        raise CkptdError(f"target {target.name!r} ({where}) has no checkpoint {args.name!r}")

    added = pin(policy.daemon.state_dir, target.name, args.name)
    print(f"{'pinned' if added else 'already pinned'}: {target.name} {args.name}")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    """Unpin one of a target's checkpoints (it need not exist any more)."""
    policy, target = _policy_target(args)
    removed = unpin(policy.daemon.state_dir, target.name, args.name)
    print(f"{'unpinned' if removed else 'was not pinned'}: {target.name} {args.name}")
    return 0


def _policy_target(args: argparse.Namespace) -> tuple[Policy, Target]:
    policy = load_policy(args.config)
    return policy, policy.target(args.target)


COMMANDS: dict[str, Command] = {"prune": cmd_prune, "pin": cmd_pin, "unpin": cmd_unpin}
