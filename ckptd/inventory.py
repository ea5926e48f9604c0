"""A target's checkpoints as ckptd knows them: the engine's list joined with the catalog.

The engine tells only names; the catalog knows times and sizes. This is the one place that
joins them, for retention, `list` and `status` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import structlog

from ckptd.catalog import Catalog, CheckpointRecord
from ckptd.engine import ContainerInfo, Engine
from ckptd.naming import parse_checkpoint_name

log = structlog.get_logger("ckptd.inventory")


def target_checkpoints(
    catalog: Catalog,
    target: str,
    container: ContainerInfo,
    on_engine: Collection[str],
    size_of: Callable[[str], int | None],
) -> list[CheckpointRecord]:
    """Return ``target``'s good checkpoints of ``container`` that exist now, newest first.

    ``on_engine`` is the engine's list of the container's checkpoint names. A ckptd name of this
    target that the catalog has never seen is adopted with the time in its name (its size from
    ``size_of``); one the catalog has in any other state (still being written, failed) is
    left out. A recorded checkpoint the engine no longer has is marked deleted.
    """
    known = catalog.names(container.id)
    present = set(on_engine)

    for name in sorted(present - known.keys()):
        ref = parse_checkpoint_name(name)

        if ref is not None and ref.target == target:
            catalog.adopt(target, container.id, container.name, name, ref.created, size_of(name))

    records = catalog.checkpoints(target=target, container_id=container.id)

    for record in records:
        if record.name not in present:
            catalog.mark_deleted(container.id, record.name)
            log.warning("checkpoint_vanished", target=target, checkpoint=record.name)

    return [record for record in records if record.name in present]


def container_checkpoints(
    catalog: Catalog, engine: Engine, container_ref: str, target: str | None = None
) -> list[CheckpointRecord]:
    """Return the good ckptd checkpoints of one container (of ``target``, or of every target).

    Times and sizes come from the catalog, through `target_checkpoints`; newest first.
    """
    container = engine.container(container_ref)
    names = engine.list_checkpoints(container.id)
    targets = {ref.target for ref in map(parse_checkpoint_name, names) if ref is not None}

    if target is not None:
        targets = {target}

    records = [
        record
        for name in sorted(targets)
        for record in target_checkpoints(
            catalog,
            name,
            container,
            names,
            lambda checkpoint: engine.checkpoint_size(container.id, checkpoint),
        )
    ]

    return sorted(records, key=lambda record: record.created, reverse=True)
