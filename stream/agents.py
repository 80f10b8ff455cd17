"""The worker's two agents: tracking events and catalog records.

Thin, as agents should be: decode and validate at the door (bad messages go to the
dead-letter topic with the reason), hand the batch to the processor or the writer, and
publish what came out (forwards of identified histories, metrics). A Redis outage
blocks the batch (``stream.rebuild.retry_redis``) instead of crashing the agent, which
could ack a batch it never applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from functools import partial
from typing import Any

import faust
import orjson

from core.gc_tuning import backlog_gc, step_gc, tune_gc
from core.limits import MAX_MESSAGE_BYTES
from core.ops_records import dead_letter_entry
from schemas import EventEnvelope, TopicEvent
from stream import metrics
from stream.applied import drop_passed_marks, forwarded_marks, offset_spans
from stream.backlog import backlog_messages, commit_caught_up, steps
from stream.decode import (
    PoisonMessage,
    dead_letter_key,
    dead_letter_reason,
    dead_letter_value,
    decode_catalog,
    decode_events,
)
from stream.deliveries import SendWatch, owner_of, send_changelog, send_or_hold, settle
from stream.faust_compat.idle_take import take_batches
from stream.history_store import ChangelogSend, TableHistoryStore, changelog_value_now
from stream.processor import BatchResult
from stream.rebuild import rebuild_if_flushed, retry_redis
from stream.stale_redis import check_redis_current, recover_lost_writes
from stream.state import WorkerState
from stream.topics import Topics

log = logging.getLogger("streamrec.worker")

#: How long a stopping events agent waits for its last batch's write to land (and the
#: batch to be acknowledged) before it leaves it to the partition's next owner.
FINISH_ON_STOP_S = 2.0


def _send_watch(app: faust.App, table: Any, source: str) -> SendWatch:
    """Kafka's refusals of what the worker produces, sent again before a batch is acked:
    a held history record as the key's history now (its last record), none of a
    partition a rebalance gave to another worker, none during a rebalance (its
    ``source`` partition's offsets withheld meanwhile: ``stream.deliveries``)."""
    watch = SendWatch()
    app.sensors.add(watch)
    changelog = table.changelog_topic.get_topic_name()
    watch.current[changelog] = partial(changelog_value_now, table)
    watch.sources[changelog] = source
    watch.owner = partial(owner_of, app)
    return watch


def register_agents(app: faust.App, state: WorkerState, topics: Topics, table: Any) -> None:
    """Attach the events and catalog agents to ``app``."""
    settings = state.settings
    watch = _send_watch(app, table, topics.events.get_topic_name())

    async def dead_letter(event: Any, reason: str) -> None:
        msg = event.message
        reason = dead_letter_reason(reason)
        await send_or_hold(topics.dlq, watch, key=dead_letter_key(msg.key),
                           value=dead_letter_value(msg.value, reason=reason, topic=msg.topic,
                                                   partition=msg.partition, offset=msg.offset))
        metrics.DEAD_LETTERED.labels(msg.topic).inc()
        entry = dead_letter_entry(reason=reason, topic=msg.topic, partition=msg.partition,
                                  offset=msg.offset, at=time.time())
        await retry_redis(partial(state.writer.dead_lettered, entry), what="a counter")
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)

    @app.agent(topics.events)
    async def process_events(stream: Any) -> None:
        # The live model before the first batch, not up to one timer period later: a
        # (re)started worker must not write model-less lists for what it reads first.
        await state.swap_model()
        await retry_redis(partial(check_redis_current, state), what="the applied-offsets check")
        # A Redis without the log's state is rebuilt before the first batch, not by the
        # watcher a few seconds later: on a fresh stack that is instant (an empty log),
        # where a burst posted at once used to race a replay of itself.
        await rebuild_if_flushed(state)
        # After `streamrec replay --rebuild`: the forwards of the messages the stopped
        # workers had applied are in the log already; they are not sent again.
        marks = await retry_redis(partial(forwarded_marks, state.redis, state.keys),
                                  what="the forwarded marks")
        tune_gc()  # a third of a backlog's batch CPU went to the collector (core.gc_tuning)
        await _batch_loop(app, stream, state, topics, table, watch, dead_letter, marks)

    @app.agent(topics.catalog)
    async def process_catalog(stream: Any) -> None:
        async for batch in take_batches(stream, settings.stream_batch_size,
                                        settings.stream_batch_within_s):
            records = []
            for event in batch:
                try:
                    records.append(decode_catalog(event.message.value))
                except PoisonMessage as exc:
                    await dead_letter(event, str(exc))
            await settle(app, watch, what="a catalog batch")  # its dead letters
            if records:
                await retry_redis(partial(state.writer.apply_catalog, records),
                                  what="a catalog batch")
                metrics.CATALOG_RECORDS.inc(len(records))
            # The catalog is compacted: offsets may skip, only the last record is a floor.
            await retry_redis(partial(state.applied.record, settings.topic_catalog,
                                      offset_spans(e.message for e in batch), contiguous=False),
                              what="the applied offsets")


async def _batch_loop(app: faust.App, stream: Any, state: WorkerState, topics: Topics,
                      table: Any, watch: SendWatch, dead_letter: Any,
                      marks: dict[int, int]) -> None:
    """The events agent's batches: each computed (:func:`_apply_events`), then finished
    (acknowledged once its last Redis write landed) while the next is computed."""
    settings = state.settings
    changelog = partial(send_changelog, app, watch)

    async def wipe_if_stale() -> None:
        """A Redis that went back under the worker (its applied offsets did) wiped for the
        rebuild, with no write of this worker in flight or starting meanwhile."""
        if not state.applied.stale_reason:
            return
        async with state.processor.writes_paused():
            await _publish(await retry_redis(state.processor.drain, what="an events batch"),
                           state, topics, watch)
            await retry_redis(partial(recover_lost_writes, state), what="a stale Redis")

    caught_up_for = -math.inf  # the catch-up whose offsets were committed at once

    async def finish(batch: list[Any], started: float, before: asyncio.Future[None] | None,
                     seq: int) -> None:
        """A computed batch, once its last Redis write landed: acknowledged, after the
        batch before it. Runs while the loop computes the next batch (whose first
        write waits for this one's: ``EventProcessor.drain``)."""
        nonlocal caught_up_for
        if before is not None:
            await before
        await _publish(await retry_redis(state.processor.drain, what="an events batch"),
                       state, topics, watch)
        # Its table writes, forwards and dead letters acknowledged by Kafka before Faust
        # may commit its offsets (its commit does not wait for changelog records: a next
        # owner's table could lack them); a refused one is sent again (stream.deliveries).
        await settle(app, watch, what="an events batch")
        spans = offset_spans(e.message for e in batch)
        await retry_redis(partial(state.applied.record, settings.topic_events, spans,
                                  contiguous=True), what="the applied offsets")
        if marks:
            passed = {p: end for p, (_, end) in spans.items()}
            await retry_redis(partial(drop_passed_marks, state.redis,
                                      state.keys.forwarded, marks, passed),
                              what="the forwarded marks")
        await wipe_if_stale()  # seen by this batch's offsets: before it is acknowledged
        for event in batch:  # offsets Faust may commit from now on
            await stream.ack(event)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if seq == begun:  # no batch began since: the worker's busy time ends here
            state.processor.spare.ended(time.monotonic())
            caught_up_for = await commit_caught_up(app.consumer, settings.topic_events,
                                                   state.processor.behind_at, caught_up_for)

    # A batch's last Redis write is in flight while the next batch is computed: a
    # held batch spent a third of its time waiting for it (docs/benchmarks.md).
    finishing: asyncio.Future[None] | None = None
    begun = 0
    try:
        async for batch in take_batches(stream, settings.stream_batch_size,
                                        settings.stream_batch_within_s, ack_later=True):
            started, now = time.perf_counter(), time.monotonic()
            if finishing is not None and finishing.done():
                finishing.result()  # a failure there fails the agent, as it did inline
            # Re-folds wait while busy (recommender.coalesce.SpareTime): a batch that
            # begins while the one before is finishing follows busy time only.
            if finishing is not None and not finishing.done():
                state.processor.spare.ended(now)
            state.processor.spare.began(now)
            begun += 1
            await wipe_if_stale()  # seen by the catalog agent's offsets
            await _apply_events(batch, state, topics, table, app.consumer, dead_letter,
                                marks, watch, changelog)
            finishing = asyncio.ensure_future(finish(batch, started, finishing, begun))
            finishing.add_done_callback(_log_failure)
    finally:
        if finishing is not None and not finishing.done():
            # Stopping: the batch in flight is acknowledged if its write lands soon;
            # otherwise it stays unacknowledged and its next owner applies it again
            # (once, by event id).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(finishing), FINISH_ON_STOP_S)
            finishing.cancel()


async def _apply_events(batch: list[Any], state: WorkerState, topics: Topics, table: Any,
                        consumer: Any, dead_letter: Any, marks: dict[int, int],
                        watch: SendWatch, changelog: ChangelogSend) -> None:
    """Decode a batch (bad messages to the dead-letter topic) and apply its events in
    steps of at most ``stream_step_events``; lists may wait while the worker is behind
    (``coalesce_backlog`` events beyond the step, :mod:`stream.backlog`). Messages below
    their partition's mark (``marks``) send no forwards: theirs are in the log."""
    settings = state.settings
    messages: list[list[tuple[TopicEvent, int]]] = []
    resent: list[bool] = []
    by_partition: dict[int, Any] = {}
    next_offsets: dict[int, int] = {}
    replayed = await retry_redis(partial(state.replayed_offsets, [
        (e.message.partition, e.message.offset) for e in batch]), what="the replay offsets")
    state.processor.replayed.clear()
    for event, again in zip(batch, replayed, strict=True):
        msg = event.message
        try:
            events = decode_events(msg.value, partition=msg.partition, offset=msg.offset,
                                   timestamp=msg.timestamp,
                                   max_ahead_s=settings.max_future_skew_s)
        except PoisonMessage as exc:
            await dead_letter(event, str(exc))
            continue
        if again:  # catch-up, not freshness (core.ops_records.replayed)
            state.processor.replayed.update(ev.event_id for ev in events)
        by_partition[msg.partition] = event
        next_offsets[msg.partition] = max(next_offsets.get(msg.partition, 0), msg.offset + 1)
        messages.append([(ev, msg.partition) for ev in events])
        resent.append(msg.offset < marks.get(msg.partition, 0))
    if not messages:
        return
    metrics.count_types(ev.type for message in messages for ev, _ in message)
    total = sum(len(m) for m in messages)
    per_message = total / len(messages)  # the backlog in events, at this batch's rate
    # Histories reach the table (and its changelog) once per entity and batch, at the end.
    store = TableHistoryStore(table, by_partition, deferred=True)
    with state.processor.batch():
        for again, run in runs(messages, resent):
            for step in steps(run, settings.stream_step_events):
                total -= len(step)
                # What the consumer has fetched beyond the batch, read again at each step
                # (in memory): a batch of a burst takes seconds, and the log's growth
                # meanwhile keeps the worker behind through the batch's last steps too.
                waiting = per_message * backlog_messages(consumer, settings.topic_events,
                                                         next_offsets)
                behind = waiting + total >= settings.coalesce_backlog
                backlog_gc(behind)  # the collector rarer on a backlog (core.gc_tuning)
                result = await retry_redis(partial(_apply, state, step, store, behind),
                                           what="an events batch")
                if again:
                    result.forwards.clear()
                await _publish(result, state, topics, watch)
        await store.flush(changelog)
        # The batch's last write stays in flight: the batch loop's finisher drains it.


def _log_failure(task: asyncio.Future[None]) -> None:
    """A batch finisher that failed (the batch loop raises it again at its next batch)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("finishing an events batch failed: %r", exc, exc_info=exc)


async def _apply(state: WorkerState, step: list[Any], store: TableHistoryStore,
                 behind: bool) -> BatchResult:
    """One step of a batch, pipelined; without the collector while behind
    (:func:`core.gc_tuning.step_gc`)."""
    with step_gc(behind):
        return await state.processor.process(step, store, behind=behind, pipelined=True)


def runs(messages: list[Any], flags: list[bool]) -> list[tuple[bool, list[Any]]]:
    """``messages`` in order, cut where their flag changes: ``(flag, messages)``."""
    out: list[tuple[bool, list[Any]]] = []
    for message, flag in zip(messages, flags, strict=True):
        if out and out[-1][0] == flag:
            out[-1][1].append(message)
        else:
            out.append((flag, [message]))
    return out


async def _publish(result: BatchResult, state: WorkerState, topics: Topics,
                   watch: SendWatch) -> None:
    """What an applied events batch hands on: the forwards of identified anonymous
    histories (to the user's partition, keyed by the user) and the metrics."""
    for user, forwarded in result.forwards.items():
        for value in forward_messages(forwarded):
            await send_or_hold(topics.events, watch, key=user.encode(), value=value)
        metrics.FORWARDED.inc(len(forwarded))
    metrics.EVENTS_PROCESSED.inc(result.events)
    metrics.EVENTS_APPLIED.inc(result.applied)
    metrics.IDENTIFY_REFUSED.inc(result.identify_refused)
    counts = state.writer.take_counts()
    metrics.UNCATALOGUED.inc(counts["uncatalogued"])
    metrics.BUDGET_CUT.inc(counts["budget_cut"])
    state.observe_lists(result)
    state.processed += result.events


def forward_messages(events: list[TopicEvent], max_bytes: int = MAX_MESSAGE_BYTES
                     ) -> list[bytes]:
    """``events`` (one user's forwards of a batch) as ``EventEnvelope`` messages of at
    most ``max_bytes`` each, in order (one event is a few KB at most). A batch can hold
    many ``identify`` events for one user, each handing over a whole anonymous history:
    300 repeats of one identify made a 1.8 MB message Kafka refused, which crashed the
    agent and left its partition's offset uncommitted for good."""
    envelope = EventEnvelope.model_construct(v=1, events=[]).model_dump()
    overhead = len(orjson.dumps(envelope))
    out: list[bytes] = []
    chunk: list[Any] = []
    size = overhead
    for event in events:
        dumped = event.model_dump(exclude_none=True)
        cost = len(orjson.dumps(dumped)) + 1  # and its comma
        if chunk and size + cost > max_bytes:
            out.append(orjson.dumps({**envelope, "events": chunk}))
            chunk, size = [], overhead
        chunk.append(dumped)
        size += cost
    if chunk:
        out.append(orjson.dumps({**envelope, "events": chunk}))
    return out
