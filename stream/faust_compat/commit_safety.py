"""Faust 0.15 fixes so an offset is only committed after its message was processed, and
a worker survives the rebalances that need them.

streamrec's contract is at-least-once delivery plus apply-once by event id, which needs
one thing from Faust: the committed offset of a partition never passes a message whose
batch has not been applied. Faust breaks that in three places (seen here as 1-5 events
lost out of 6,000 in the SIGKILL chaos test when the machine was loaded):

1. **Messages dropped, then committed over, at the end of a rebalance.**
   ``Recovery.on_recovery_completed`` (and ``_resume_streams``) resume the source
   partitions, then await the seek to the committed offsets, then call
   ``flow_control.resume()``, which *clears every stream queue*. When the table had a
   changelog to restore, Faust's fetcher is already running at that point, so messages
   fetched during the seek sit in the queue and are thrown away: never processed, never
   acked, and the fetch position is already past them. The seek also resets Faust's
   read offsets under the running fetcher, so the next message read looks like a jump
   and Faust records the offsets in between as a "gap", which it treats as acked: the
   dropped messages get committed. Under load the seek takes long enough for this to
   happen. :func:`install` defers resuming the source partitions until after the seek
   and the queue clearing, so nothing is fetched for them before (changelog partitions,
   which a recovery begun meanwhile resumes, pass at once).
2. **Commit past a one-message hole.** ``Consumer._new_offset`` refuses to commit when
   the lowest acked offset is more than one above the committed offset, but the
   committed offset is already the *next* offset to read, so a hole of exactly that
   one message is committed over. :func:`install` makes the check exact (the message at
   the committed offset must be acked, or covered by one of Faust's gap ranges), so a
   message lost in flight stalls the commit and is redelivered after a restart instead
   of being skipped for good. (streamrec's source topics have no transactions and no
   compaction, so every offset below the high watermark is a message that arrives.)
3. **Records of paused partitions drained and discarded.** Faust hands aiokafka its
   live set of active partitions; when that set is empty by the time the consumer
   thread reads it (changelog partitions just paused, source partitions not resumed
   yet), aiokafka's ``fetched_records`` takes "no partitions" to mean *all* of them,
   returns the prefetched source records and advances their positions, and Faust then
   drops them because their partitions are not active. Seen in a traced run as a worker
   starting hundreds of offsets past its committed position. :func:`install` hands
   aiokafka a snapshot of the set and fetches nothing when it is empty.
4. **No rewind for a partition the group never committed.** The seek at the end of a
   rebalance is what undoes a fetch that ran ahead (the three cases above, and records
   Faust throws away while it rebalances); aiokafka's ``seek_to_committed`` leaves the
   position alone when a partition has no committed offset (or 0). So a worker whose
   group had not committed yet, or whose broker came back without its log (a fresh,
   memory-only Tansu: seen as a worker that never counted the 50 events the new log
   held, 1 run in ~5), kept a position past every record fetched during the rebalance.
   :func:`install` seeks those source partitions to the start of their log, as the
   ``earliest`` reset a fresh consumer uses would; changelog partitions are Faust's
   recovery's to position and are left alone. Events applied again are applied once
   (by event id).
5. **A partition awaiting its offset crashed the worker.** Faust's livelock detector
   (``verify_event_path``, on a timer) reads each assigned partition's ``position``,
   which aiokafka asserts is set; a partition sought to its start (4), or reset by the
   ``earliest`` policy, has none until its leader answers. In the cluster chaos test a
   broker was down when a new worker rejoined: the detector's tick landed in that window
   and the worker died in ``AssertionError``. :func:`install` skips a partition without
   a position (nothing is being processed on it, so nothing can be stuck).

Besides, the worker may withhold partitions from every commit (:func:`set_withheld`):
those whose batches' history changelog records a rebalance held back
(:mod:`stream.deliveries`); their batches are acked, and must still be read again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_installed = False

#: Source partitions (``(topic, partition)``) of which nothing is committed now.
_withheld: set[tuple[str, int]] = set()


def set_withheld(tps: set[tuple[str, int]]) -> None:
    """Commit no offset of ``tps`` (``(topic, partition)``; Faust's ``TP`` is one) until
    the next call leaves them out: their batches are acked, but a record they produced
    is not in Kafka yet, so whoever owns them next must read them again."""
    _withheld.clear()
    _withheld.update(tps)


def withheld() -> frozenset[tuple[str, int]]:
    """The partitions :func:`set_withheld` withholds now."""
    return frozenset(_withheld)


def first_pending_offset(acked: list[int], gaps: Any) -> int | None:
    """Lowest offset Faust counts as done: an acked offset or the start of a gap range."""
    starts = [iv.begin for iv in gaps] if gaps else []
    candidates = ([min(acked)] if acked else []) + starts
    return min(candidates) if candidates else None


def _exact_new_offset(original: Callable[[Any, Any], int | None]
                      ) -> Callable[[Any, Any], int | None]:
    @functools.wraps(original)
    def new_offset(self: Any, tp: Any) -> int | None:
        if tp in _withheld:
            return None  # a record of its acked batches is not in Kafka yet
        committed = self._committed_offset[tp]
        if committed is not None:
            lowest = first_pending_offset(self._acked[tp], self._gap.get(tp))
            if lowest is not None and lowest > committed:
                return None  # the message at ``committed`` is not done yet
        return original(self, tp)

    return new_offset


def _resume_sources_last(original: Callable[..., Awaitable[None]]
                         ) -> Callable[..., Awaitable[None]]:
    @functools.wraps(original)
    async def resume(self: Any, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        real = type(consumer).resume_partitions.__get__(consumer)
        deferred: set[Any] = set()

        def hold(tps: Any) -> None:
            # Only source partitions wait. This shadow is seen by every task while the
            # original awaits (table callbacks, the seek): the recovery of a rebalance
            # that began meanwhile resumes its changelog partitions through it, and a
            # resume held here and dropped below (that generation is over) left them
            # paused: the recovery read nothing for minutes ("No event received for
            # active tp"), seen in a rolling restart of two workers.
            tps = set(tps)
            changelogs = {tp for tp in tps if self._is_changelog_tp(tp)}
            if changelogs:
                real(changelogs)
            deferred.update(tps - changelogs)

        # Shadow the bound method on this instance while Faust seeks and clears queues.
        consumer.resume_partitions = hold
        try:
            await original(self, generation_id=generation_id)
        finally:
            # Unless a later call of this wrapper shadowed it since (it removes its own).
            if vars(consumer).get("resume_partitions") is hold:
                del consumer.resume_partitions
        if deferred and self.app.consumer_generation_id == generation_id:
            real(deferred & consumer.assignment())

    return resume


def _only_active_records(original: Callable[..., Awaitable[Any]]
                         ) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def fetch_records(self: Any, consumer: Any, active_partitions: Any,
                            timeout: float | None = None,
                            max_records: int | None = None) -> Any:
        if active_partitions is not None:
            active_partitions = set(active_partitions)
            if not active_partitions:
                return {}
        return await original(self, consumer, active_partitions, timeout=timeout,
                              max_records=max_records)

    return fetch_records


async def seek_uncommitted_to_start(consumer: Any, committed: dict[Any, int | None],
                                    skip_topics: set[str]) -> list[Any]:
    """Seek ``consumer`` (an aiokafka consumer) to the start of every partition whose
    ``committed`` offset is None or 0, except those of ``skip_topics``; the ones moved."""
    fresh = [tp for tp, offset in committed.items()
             if not offset and tp.topic not in skip_topics]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
    return fresh


def _rewind_uncommitted(original: Callable[..., Awaitable[Any]]
                        ) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def seek_to_committed(self: Any) -> Any:
        committed = await original(self)
        changelogs = set(self.consumer.app.tables.changelog_topics)
        await self.call_thread(seek_uncommitted_to_start, self._ensure_consumer(),
                               dict(committed), changelogs)
        return committed

    return seek_to_committed


def position_known(thread: Any, tp: Any) -> bool:
    """Whether aiokafka has a fetch position for ``tp`` in ``thread``'s consumer (False
    while it awaits an offset reset; True when the state cannot be read, so the
    detector runs as Faust wrote it)."""
    try:
        assignment = thread._ensure_consumer()._fetcher._subscriptions.subscription.assignment
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
    except AttributeError:
        return True
    return state is None or bool(state.has_valid_position)


def _skip_unpositioned(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def verify_event_path(self: Any, now: float, tp: Any) -> None:
        if position_known(self, tp):
            original(self, now, tp)

    return verify_event_path


def install() -> None:
    """Patch Faust's recovery and commit code (idempotent; call before the app runs)."""
    global _installed
    if _installed:
        return
    patches: list[tuple[type, str, Callable[[Any], Any]]] = [
        (Consumer, "_new_offset", _exact_new_offset),
        (Recovery, "_resume_streams", _resume_sources_last),
        (Recovery, "on_recovery_completed", _resume_sources_last),
        (AIOKafkaConsumerThread, "_fetch_records", _only_active_records),
        (AIOKafkaConsumerThread, "seek_to_committed", _rewind_uncommitted),
        (AIOKafkaConsumerThread, "verify_event_path", _skip_unpositioned),
    ]
    for owner, name, wrap in patches:
        setattr(owner, name, wrap(getattr(owner, name)))
    _installed = True
