"""Rebuilding Redis from the log, and riding out Redis outages in the worker.

Kafka is the truth and Redis a cache, so when Redis is flushed or restarted empty,
everything it held is derived again by replaying the topics from offset 0 through the
*same* :class:`~stream.processor.EventProcessor` the worker uses (and the catalog through
the same writer). The seen-sets went with the flush, so the replay applies every event
exactly once; events the live worker applies meanwhile are deduplicated against it by
the same once-per-event-id Lua script, whichever comes first.

Detection is a sentinel key (``RedisKeys.sentinel``): a completed rebuild writes it, and
its absence means "this Redis does not hold the whole log's state". The worker checks it
at start and every few seconds (:func:`rebuild_if_flushed`) and rebuilds in a thread,
one worker at a time (``RedisKeys.rebuild_lock``). ``streamrec rebuild`` does the same
from the command line. The sentinel cannot tell a Redis that came back from an older
snapshot (the sentinel was in it): :mod:`stream.applied` catches that one by comparing
the offsets Redis has applied with the group's committed offsets, wipes it and removes
the sentinel, so it is rebuilt here too.

:func:`retry_redis` keeps a batch from crashing the agent while Redis is down: it blocks
the batch (and so the partition) until Redis answers, which is at-least-once and exact,
where a crashed agent could ack a batch it never applied.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError as AIOKafkaError
from kafka.errors import KafkaError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from core import kafka_tools
from core.outage_notice import OutageNotice
from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.model import FoldInModel
from schemas import CatalogRecord, TopicEvent
from stream import forget, metrics
from stream.applied import keep_rebuild_lock, release_rebuild_lock, take_rebuild_lock
from stream.bounds import state_bounds
from stream.catalog_columns import COLUMNS_VERSION, ensure_columns
from stream.decode import PoisonMessage, decode_catalog, decode_events
from stream.history_expiry import drop_expired
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from stream.state import WorkerState

log = logging.getLogger("streamrec.rebuild")

T = TypeVar("T")
#: Messages per replayed batch (the worker's own batch size is of the same order).
BATCH = 500
#: Histories a replay holds before it first drops those past their expiry (it does again
#: each time their number doubles): the bound of the worker's table
#: (``stream.history_expiry``) on the replay of a log kept forever.
PRUNE_MIN = 10_000
#: Backoff bounds while Redis is unreachable (seconds).
RETRY_MIN_S, RETRY_MAX_S = 0.1, 2.0


@dataclass
class RebuildResult:
    """What a rebuild replayed."""

    messages: int = 0
    events: int = 0
    applied: int = 0
    skipped_poison: int = 0
    catalog_records: int = 0
    seconds: float = 0.0
    #: Histories dropped past their expiry, and the most held at once.
    histories_expired: int = 0
    histories_peak: int = 0


class RebuildBusy(Exception):
    """Another process holds the rebuild lock (a worker rebuilding after a flush or
    wiping a stale Redis, ``streamrec rebuild``, ``streamrec replay --rebuild``)."""


def out_of_memory(exc: BaseException) -> bool:
    """True for Redis refusing a write at ``maxmemory`` (policy ``noeviction``), also
    when the write was inside a Lua script."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc))


async def retry_redis(call: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run ``call`` until it does not fail with a Redis/connection error.

    Used around the worker's batch processing so a Redis outage pauses consumption
    instead of crashing the agent. Logged once per outage, not per attempt. A Redis at
    its ``maxmemory`` refuses writes (nothing is evicted): that is logged as an error and
    counted (``streamrec_redis_oom_errors_total``), and consumption waits, with lag
    growing, until memory is freed or ``maxmemory`` raised; no event is dropped.
    """
    delay = RETRY_MIN_S
    failures = 0
    oom_logged = False
    started = time.monotonic()
    while True:
        try:
            result = await call()
        except (RedisError, ConnectionError, OSError) as exc:
            failures += 1
            oom = out_of_memory(exc)
            if oom:
                metrics.REDIS_OOM.inc()
            if oom and not oom_logged:  # also when the outage began as something else
                oom_logged = True
                log.error("Redis refused %s: out of memory (maxmemory reached, policy "
                          "noeviction); consumption waits until memory is freed or "
                          "maxmemory raised", what)
            elif failures == 1:
                log.warning("Redis unavailable while applying %s (%s); retrying until it "
                            "answers", what, type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        if failures:
            log.info("Redis answers again: applied %s after %d failed attempts (%.1fs)",
                     what, failures, time.monotonic() - started)
        return result


class RedisOutageNotice(OutageNotice):
    """One WARNING when the worker's heartbeat finds Redis gone, one INFO when it answers
    again: what failed, what the worker does meanwhile and for how long it lasted.

    Why: during an outage the worker's log held only Faust's ``Timer heartbeat is
    overlapping`` lines (its timers waiting out Redis's timeout), which name neither
    Redis nor what to do."""

    def __init__(self, redis_url: str) -> None:
        from core.setting_checks import mask_url

        super().__init__(
            log, mask_url(redis_url),
            "Redis at %s does not answer (%s): events wait in Kafka (lag grows, nothing is "
            "lost), lists and counters are not updated, and the worker retries every 2 s; "
            "check that Redis runs and is reachable",
            "Redis at %s answers again after %.0fs; the worker catches up")

    def failed(self, exc: BaseException) -> None:  # type: ignore[override]
        """The heartbeat could not reach Redis; logged once per outage."""
        super().failed(type(exc).__name__)


#: What a timer meets while Redis or the broker is away, and skips a tick for: Redis and
#: socket errors, and the Kafka clients' errors (kafka-python's, which the timers' end
#: offset and committed offset reads use, and aiokafka's). Apache Kafka answers metadata
#: with no broker for a moment after a stall (KRaft fenced it): MetadataEmptyBrokerList.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisError, OSError, KafkaError, AIOKafkaError)


def survives_outage(fun: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Decorate a worker timer so a Redis or Kafka error skips one tick instead of ending
    it: an exception in a Faust timer crashes the whole worker (the scheduled retrain's
    end offset read did, after an Apache Kafka broker stall), and heartbeats must not
    stop after an outage."""

    @functools.wraps(fun)
    async def wrapper() -> None:
        try:
            await fun()
        except OUTAGE_ERRORS as exc:
            log.debug("%s skipped: Redis or Kafka unavailable (%s)", fun.__name__,
                      type(exc).__name__)

    return wrapper


async def replay_into_redis(settings: Settings, client: aioredis.Redis, *,
                            model: Callable[[], FoldInModel | None] = lambda: None,
                            progress: Callable[[int], None] | None = None
                            ) -> RebuildResult:
    """Replay the catalog and events topics from offset 0 into ``client``'s Redis.

    Poison messages are skipped (the worker dead-lettered them when they first came);
    forwards of identified anonymous histories are not re-sent (they are in the log).
    ``progress`` is called with the ``events`` messages read since its last call (the
    CLI's progress bar). The histories the replay holds in memory are bounded as the
    worker's table is: those past their expiry by their partition's clock go, once
    :data:`PRUNE_MIN` are held and whenever their number doubled since (the log is kept
    forever, and every id a client ever named has a history in it).
    """
    started = time.monotonic()
    keys = RedisKeys()
    writer = RedisWriter(client, keys, dedupe_ttl_s=settings.dedupe_ttl_s,
                         bounds=state_bounds(settings), replay=True)
    result = RebuildResult()

    records: list[CatalogRecord] = []
    for rec in kafka_tools.read_topic(settings, settings.topic_catalog):
        try:
            records.append(decode_catalog(rec.value))
        except PoisonMessage:
            result.skipped_poison += 1
    for start in range(0, len(records), BATCH):
        await writer.apply_catalog(records[start:start + BATCH])
    result.catalog_records = len(records)
    await client.set(keys.columns_ready, COLUMNS_VERSION)  # the catalog, columns included, is whole

    # Forgotten ids first: none of their events received before the forget is replayed.
    await forget.restore(client, keys, forget.read_forgotten(settings))
    processor = EventProcessor(writer, keys, ProcessorConfig.from_settings(settings, replay=True),
                               model)
    store = DictStore()
    batch: list[tuple[TopicEvent, int]] = []
    pending = 0
    prune_at = PRUNE_MIN

    reported = 0

    async def flush() -> None:
        nonlocal batch, pending, reported, prune_at
        if batch:
            done = await processor.process(batch, store)
            result.events += done.events
            result.applied += done.applied
        held = len(store.data)
        result.histories_peak = max(result.histories_peak, held)
        if held >= prune_at:
            result.histories_expired += drop_expired(store.data, processor.clocks)
            prune_at = max(PRUNE_MIN, 2 * len(store.data))
        batch, pending = [], 0
        if progress is not None:
            progress(result.messages - reported)
            reported = result.messages

    for rec in kafka_tools.read_topic(settings, settings.topic_events):
        result.messages += 1
        try:
            events = decode_events(rec.value, partition=rec.partition, offset=rec.offset,
                                   timestamp=rec.timestamp / 1000,
                                   max_ahead_s=settings.max_future_skew_s)
        except PoisonMessage:
            result.skipped_poison += 1
            continue
        batch.extend((ev, rec.partition) for ev in events)
        pending += 1
        if pending >= BATCH:
            await flush()
    await flush()
    result.seconds = time.monotonic() - started
    await client.set(keys.sentinel, f"rebuilt {time.time():.3f} events={result.events}")
    return result


def rebuild(settings: Settings, *, model: Callable[[], FoldInModel | None] = lambda: None,
            progress: Callable[[int], None] | None = None) -> RebuildResult:
    """Synchronous :func:`replay_into_redis` with its own connection (CLI, threads)."""

    async def run() -> RebuildResult:
        client = async_client(settings)
        try:
            return await replay_into_redis(settings, client, model=model, progress=progress)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def rebuild_if_flushed(state: WorkerState) -> bool:
    """Worker hook: rebuild (in a thread) when Redis lost the sentinel; True if it did.

    Errors while Redis is down are left for the next tick.
    """
    keys: RedisKeys = state.keys
    try:
        await ensure_columns(state.redis, keys, state.settings.ranked_items_max)
        if await state.redis.exists(keys.sentinel):
            return False
        holder = await take_rebuild_lock(state.redis, keys)
        if holder is None:
            return False  # another worker rebuilds
    except (RedisError, OSError):
        return False
    log.warning("Redis holds no state of the log (flushed, restarted or new): rebuilding "
                "from %s offset 0", state.settings.topic_events)
    try:
        result = await rebuild_holding(state.redis, keys, holder, state.settings,
                                       model=lambda: state.model)
        log.info("rebuild done: %d messages, %d events (%d applied by the replay) in "
                 "%.1fs", result.messages, result.events, result.applied, result.seconds)
    except Exception:
        log.exception("rebuild failed; retrying on the next check")
    return True


async def rebuild_holding(redis: aioredis.Redis, keys: RedisKeys, holder: str,
                          settings: Settings, *,
                          model: Callable[[], FoldInModel | None] = lambda: None,
                          progress: Callable[[int], None] | None = None) -> RebuildResult:
    """:func:`rebuild` in a thread while this loop renews the rebuild lock ``holder``
    took (:func:`stream.applied.keep_rebuild_lock`), released after, done or failed."""
    keeper = asyncio.create_task(keep_rebuild_lock(redis, keys, holder))
    try:
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: rebuild(settings, model=model, progress=progress))
    finally:
        keeper.cancel()
        try:
            await release_rebuild_lock(redis, keys, holder)
        except (RedisError, OSError):
            pass


def rebuild_exclusive(settings: Settings, *, progress: Callable[[int], None] | None = None
                      ) -> RebuildResult | None:
    """:func:`rebuild` under the rebuild lock (``streamrec rebuild``), None when another
    process holds it (a worker rebuilding after a flush, or wiping a stale Redis): two
    replays of the whole log at once doubled the load for the same state."""

    async def run() -> RebuildResult | None:
        client = async_client(settings)
        keys = RedisKeys()
        try:
            holder = await take_rebuild_lock(client, keys)
            if holder is None:
                return None
            return await rebuild_holding(client, keys, holder, settings, progress=progress)
        finally:
            await client.aclose()

    return asyncio.run(run())


@contextmanager
def rebuild_lock_held(settings: Settings) -> Iterator[None]:
    """Hold the rebuild lock (renewed) for the ``with`` block, from synchronous code
    (``streamrec replay --rebuild``); :class:`RebuildBusy` at once, before the block,
    when another process holds it. Why: a replay's wipe beside another rebuild removed
    part of what that one wrote, and that one then marked Redis whole.

    The lock's client lives on its own event loop in a thread, which renews it while
    the block runs (the block may take minutes: a changelog's tombstones)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="rebuild-lock", daemon=True)
    thread.start()

    def wait(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]

    async def connect() -> aioredis.Redis:
        return async_client(settings)

    keys = RedisKeys()
    client = wait(connect())
    try:
        holder = wait(take_rebuild_lock(client, keys))
        if holder is None:
            raise RebuildBusy("another process is wiping or rebuilding Redis now")
        keeper = asyncio.run_coroutine_threadsafe(keep_rebuild_lock(client, keys, holder),
                                                  loop)
        try:
            yield
        finally:
            keeper.cancel()
            try:
                wait(release_rebuild_lock(client, keys, holder))
            except (RedisError, OSError):
                pass  # it expires
    finally:
        try:
            wait(client.aclose())
        finally:  # the loop's thread stops also when closing the client fails
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
