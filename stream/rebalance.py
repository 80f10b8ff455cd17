"""What the worker does when Kafka moves partitions between workers."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import faust
from redis.exceptions import RedisError

from core.kafka_tools import partition_of
from stream.state import WorkerState

log = logging.getLogger("streamrec.worker")


def register_rebalance_hooks(app: faust.App, state: WorkerState) -> None:
    """Forget the refresh sweep's entities, the applied offsets and the waiting lists
    this worker tracked on revocation; report ready and take over the waiting lists and
    the pending forget sweeps of its partitions once assigned."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_partitions_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Another worker may own those histories now; re-listing them from the copy left
        # here could overwrite its fresher lists.
        state.processor.sweep.forget()
        state.applied.forget()
        # Their waiting lists stay in Redis (RedisKeys.relist_pending) for the next owner.
        state.processor.relister.coalescer.forget()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        state.ready = True
        state.replay_ends_read_at = -math.inf  # a replay may have moved these partitions
        log.info("worker %s ready (partitions assigned)", state.worker_id)
        await restore_waiting(state, app.consumer)
        await resume_forget_sweeps(state, app.consumer)


def owned_by(state: WorkerState, consumer: Any) -> Callable[[str], bool] | None:
    """Whether an entity's events are on this worker's partitions of ``events`` (None
    while it has none)."""
    topic = state.settings.topic_events
    mine = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
    if not mine:
        return None
    parts = consumer.topic_partitions(topic) or state.settings.topic_partitions
    return lambda entity: partition_of(entity.encode(), parts) in mine


async def resume_forget_sweeps(state: WorkerState, consumer: Any) -> int:
    """Take up the forget sweeps pending in Redis of the ids on this worker's partitions
    (``stream.forget.Forgetting.resume``: a worker stopped mid-sweep left them); how
    many. Also a timer's (``stream.timers``): a Redis failure here leaves them to it."""
    owned = owned_by(state, consumer)
    if owned is None:
        return 0
    try:
        return await state.processor.forgetting.resume(owned)
    except (RedisError, OSError):
        log.warning("could not read the pending forget sweeps; the timer retries")
        return 0


async def restore_waiting(state: WorkerState, consumer: Any) -> int:
    """Take over the waiting lists (coalesced while a worker was behind) of the entities
    on this worker's partitions, e.g. left by a worker that stopped; how many."""
    owned = owned_by(state, consumer)
    if owned is None:
        return 0
    try:
        waiting = await state.writer.waiting_lists()
    except (RedisError, OSError):
        log.warning("could not read the waiting lists; they stay for the next rebalance")
        return 0
    entities = [e for e in waiting if owned(e)]
    state.processor.relister.coalescer.restore(entities, time.time())
    if entities:
        log.info("took over %d waiting lists", len(entities))
    return len(entities)
