"""Retention applied to the engine: build records, plan, delete, and make room before a checkpoint.

`build_records` is the only place that turns what the engine and the catalog know into retention
records; the planner and its callers see nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ckptd.catalog import Catalog
from ckptd.engine import ContainerInfo, Engine
from ckptd.errors import CkptdError, DiskSpaceError
from ckptd.inventory import target_checkpoints
from ckptd.metrics import Metrics
from ckptd.naming import parse_checkpoint_name
from ckptd.pins import pinned
from ckptd.policy import DaemonSettings, Target, store_location
from ckptd.retention import CheckpointRecord, Origin, RetentionPlan, plan_retention
from ckptd.sizes import format_size
from ckptd.store import Store

log = structlog.get_logger("ckptd.pruner")

# A checkpoint not made by ckptd has no time in its name; without a local folder to read one
# from, it is shown at the epoch (the floor keeps it whatever its time).
UNKNOWN_TIME = datetime.fromtimestamp(0, UTC)
# How many recent checkpoints the next one's size is estimated from (the largest of them).
SIZE_HISTORY = 3


@dataclass
class PruneOutcome:
    """What applying a plan did."""

    plan: RetentionPlan
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def build_records(
    engine: Engine,
    catalog: Catalog,
    container: ContainerInfo,
    target: str,
    pins: Collection[str] = (),
    verified: str | None = None,
    stored: Collection[str] | None = None,
) -> list[CheckpointRecord]:
    """Return a retention record for every checkpoint of `container`.

    `stored` names the checkpoints with a copy in the target's store (None: it has no store);
    one of the target's without a copy is marked unstored, so it never is the newest good one.

    The target's good checkpoints, with their times and sizes, come from the catalog (through
    `inventory.target_checkpoints`, which adopts ones it has not seen). A name of this target
    that the catalog does not call good (still being written, or left by a failure) is marked
    in progress, so the floor keeps it. Other targets' times come from their names; a name
    ckptd did not make gets its folder's time when the folder is local.
    """
    names = engine.list_checkpoints(container.id)
    good = {
        record.name: record
        for record in target_checkpoints(
            catalog,
            target,
            container,
            names,
            lambda name: engine.checkpoint_size(container.id, name),
        )
    }
    records: list[CheckpointRecord] = []

    for name in names:
        ref = parse_checkpoint_name(name)
        known = good.get(name)

        if known is not None:
            created, size, origin = known.created, known.size_bytes, Origin.TARGET
        elif ref is None:
            created = engine.checkpoint_modified(container.id, name) or UNKNOWN_TIME
            size, origin = engine.checkpoint_size(container.id, name), Origin.FOREIGN
        else:
            size = engine.checkpoint_size(container.id, name)
            origin = Origin.TARGET if ref.target == target else Origin.OTHER_TARGET
            created = ref.created

        records.append(
            CheckpointRecord(
                name=name,
                created=created,
                size_bytes=size,
                pinned=name in pins,
                in_progress=origin is Origin.TARGET and known is None,
                origin=origin,
                verified=name == verified,
                unstored=stored is not None and origin is Origin.TARGET and name not in stored,
            )
        )

    return records


def estimate_next_size(records: Iterable[CheckpointRecord]) -> int:
    """Return the expected size of the next checkpoint: the largest of the latest few, or 0."""
    own = [r for r in records if r.origin is Origin.TARGET and r.size_bytes is not None]
    recent = sorted(own, key=lambda r: (r.created, r.name), reverse=True)[:SIZE_HISTORY]
    return max((r.size_bytes or 0 for r in recent), default=0)


def free_bytes_at(path: Path) -> int | None:
    """Return the bytes free on the filesystem that holds `path`, or will once it is made."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            usage = os.statvfs(candidate)
            return usage.f_bavail * usage.f_frsize

    return None


class Pruner:
    """Plans and applies a target's retention on the engine."""

    def __init__(
        self, engine: Engine, metrics: Metrics, catalog: Catalog, daemon: DaemonSettings
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.catalog = catalog
        self.daemon = daemon

    def records(self, target: Target, container: ContainerInfo) -> list[CheckpointRecord]:
        """Return the retention records of `target`'s container, pins included."""
        pins = pinned(self.daemon.state_dir, target.name)
        root = store_location(self.daemon, target)
        store = None if root is None else Store(root)
        newest = None if store is None else store.newest_verified(container.id)
        verified = None if newest is None else newest.checkpoint
        stored = None if store is None else {e.checkpoint for e in store.entries(container.id)}
        return build_records(
            self.engine, self.catalog, container, target.name, pins, verified, stored
        )

    def plan(self, target: Target, container: ContainerInfo, now: datetime) -> RetentionPlan:
        """Return the retention plan for `target` as things stand on the engine."""
        return plan_retention(self.records(target, container), target.retention, now)

    def apply(self, target: Target, container: ContainerInfo, plan: RetentionPlan) -> PruneOutcome:
        """Delete what `plan` deletes, oldest first; a failed deletion is logged and skipped."""
        outcome = PruneOutcome(plan)

        for decision in reversed(plan.delete):
            if self._delete(target, container, decision.name, ", ".join(decision.reasons)):
                outcome.deleted.append(decision.name)
            else:
                outcome.failed.append(decision.name)

        self._report_budget(target, plan.unmet)
        return outcome

    def make_room(self, target: Target, container: ContainerInfo, now: datetime) -> int | None:
        """Ensure the disk holds the next checkpoint with min_free_disk to spare.

        Deletes, oldest first, only checkpoints the rules let go, and stops once there is room.
        Returns the bytes free afterwards (None when the engine's disk is not on this host or no
        min_free_disk is set); raises DiskSpaceError when there is still not enough room.
        """
        minimum = target.retention.min_free_disk

        if minimum is None:
            minimum = self.daemon.min_free_disk

        free = None if minimum is None else self._free(target, container)

        if minimum is None or free is None:
            return None

        records = self.records(target, container)
        needed = minimum + estimate_next_size(records)
        plan = plan_retention(records, target.retention, now)

        for decision in reversed(plan.delete):
            if free >= needed:
                break

            if self._delete(target, container, decision.name, "disk space"):
                free = self._free(target, container) or 0

        if free < needed:
            self._report_budget(target, [f"min_free_disk {format_size(minimum)}"])
            raise DiskSpaceError(str(container.name), free, needed)

        return free

    def _free(self, target: Target, container: ContainerInfo) -> int | None:
        """Return the bytes free where the next checkpoint goes; None when that is not local.

        The engine writes it into the container's folder and, for a target with ckptd's store,
        the store keeps it too: the smaller free space of the two filesystems counts.
        """
        sizes = [self.engine.free_bytes(container.id)]
        root = store_location(self.daemon, target)
        if root is not None:
            sizes.append(free_bytes_at(root))

        known = [size for size in sizes if size is not None]
        return min(known) if known else None

    def _delete(self, target: Target, container: ContainerInfo, name: str, why: str) -> bool:
        """Delete one checkpoint; return False (and log) when the engine refuses."""
        prune_id = self.catalog.begin_prune(target.name, container.id, name, why)

        try:
            self.engine.delete_checkpoint(container.id, name)
        except CkptdError as error:
            self.catalog.finish_prune(prune_id, deleted=False, message=str(error))
            log.warning("prune_failed", target=target.name, checkpoint=name, error=str(error))
            return False

        self.catalog.finish_prune(prune_id, deleted=True)
        root = store_location(self.daemon, target)

        if root is not None:
            Store(root).remove(container.id, name)

        self.metrics.pruned.labels(target.name, target.container).inc()
        log.info("checkpoint_pruned", target=target.name, checkpoint=name, reason=why)
        return True

    def _report_budget(self, target: Target, unmet: list[str]) -> None:
        """Set the budget gauge and log each budget the floor does not let ckptd meet."""
        self.metrics.budget_unmet.labels(target.name, target.container).set(1 if unmet else 0)

        for budget in unmet:
            log.warning("retention_budget_unmet", target=target.name, budget=budget)
