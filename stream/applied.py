"""Which offsets of the log Redis holds the effects of, and what happens when it holds less.

After each batch the worker records, in ``RedisKeys.applied(topic)``, the next offset of
every partition in the batch: after the batch's own writes and before Faust may commit
those offsets. So a Redis that kept every write has ``applied >= committed`` for every
partition of the worker group. A Redis brought back from an older snapshot, or one that
lost the tail of its append-only file, has less, and its lists and counts are silently
stale; the sentinel of :mod:`stream.rebuild` cannot tell, because it was saved in that
same snapshot. Two checks catch it:

* when a worker starts (before its first batch): Redis's applied offsets against the
  group's committed offsets (:func:`behind_log`);
* at every batch: the recording script reports when an offset in Redis is below what
  this worker recorded last, or below where it started reading the partition (Redis
  restarted under a running worker and lost writes).

The opposite also happens: Redis kept its file while the log is a new one (a Kafka log
deleted or recreated, another cluster shape of the embedded stack, a compose volume
removed). Then Redis has applied *more* than the log holds: a starting worker on Apache
Kafka compares the applied offsets with the log's end offsets (:func:`ahead_of_log`) and
treats that Redis the same way, dropping its offsets of the other log too.

Either way :func:`recover_stale` wipes the derived state (``RedisKeys.derived_patterns``,
as ``streamrec replay --rebuild`` does: a replay over leftovers would count events whose
seen-sets expired twice), records the offsets it knows as applied (so the other workers
starting now do not wipe again), and removes the sentinel, so the worker rebuilds
everything from the log (:func:`stream.rebuild.rebuild_if_flushed`). Only one worker
wipes (``RedisKeys.rebuild_lock``); the others wait until it is done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import kafka_tools
from core.redis_client import Lua, wait_replicated
from core.redis_keys import RedisKeys
from core.settings import Settings

log = logging.getLogger("streamrec.applied")

#: KEYS[1] = the applied hash; ARGV = (partition, next offset, floor or "")*. Returns 1
#: when an offset in Redis was below its floor (what Redis must have applied already).
RECORD = """
local regressed = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 2] ~= '' and current and tonumber(current) < tonumber(ARGV[i + 2]) then
    regressed = 1
  end
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return regressed
"""
#: How long the lock of wipes and rebuilds (``RedisKeys.rebuild_lock``) outlives a holder
#: that died without releasing it.
REBUILD_LOCK_TTL_S = 120
#: How long a worker waits for another one's wipe before going on anyway: at most as long
#: as that worker's lock can live.
WAIT_FOR_WIPE_S = float(REBUILD_LOCK_TTL_S)
#: KEYS[1] = the rebuild lock, ARGV[1] = a holder's mark: deletes the lock (ARGV[2]
#: absent) or renews it for ARGV[2] seconds, only while it is still that holder's.
_HOLDERS = Lua("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
""")

Offsets = dict[tuple[str, int], int]


def offset_spans(messages: Iterable[Any]) -> dict[int, tuple[int, int]]:
    """Per partition, the lowest offset among ``messages`` (Faust messages) and one past
    the highest."""
    result: dict[int, tuple[int, int]] = {}
    for msg in messages:
        first, end = result.get(msg.partition, (msg.offset, msg.offset + 1))
        result[msg.partition] = (min(first, msg.offset), max(end, msg.offset + 1))
    return result


class AppliedOffsets:
    """Records the offsets this worker applied, and notices when Redis forgets them."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.last: Offsets = {}
        #: Set when Redis lost writes under this worker; cleared by :func:`recover_stale`.
        self.stale_reason: str | None = None
        self._record = redis.register_script(RECORD)

    async def record(self, topic: str, spans: dict[int, tuple[int, int]], *,
                     contiguous: bool) -> None:
        """Store the batch's ``spans`` as applied (after the batch's writes, before the
        next batch). Redis must already hold at least what this worker recorded last for
        a partition, or, for its first batch of a ``contiguous`` topic (every offset is a
        message: no compaction), the batch's first offset: the group's committed offset
        this worker started from, which Redis had applied before it was committed."""
        if not spans:
            return
        args: list[Any] = []
        for partition, (first, end) in sorted(spans.items()):
            floor = self.last.get((topic, partition), first if contiguous else None)
            args += [partition, end, "" if floor is None else floor]
        regressed = await self._record(keys=[self.keys.applied(topic)], args=args)
        # Before Faust commits these offsets: on a master failover they must not be lost
        # (Redis would then look behind the log and be rebuilt whole).
        await wait_replicated(self.redis, [self.keys.applied(topic)], self.keys)
        for partition, (_, end) in spans.items():
            self.last[(topic, partition)] = end
        if regressed and self.stale_reason is None:
            self.stale_reason = (f"Redis lost writes: its applied offsets of {topic} are "
                                 "behind what was applied (restarted from an older copy)")

    def forget(self) -> None:
        """Drop what this worker recorded (partitions revoked: others own them now)."""
        self.last.clear()


async def behind_log(settings: Settings, redis: aioredis.Redis,
                     keys: RedisKeys) -> tuple[list[str], Offsets]:
    """Partitions whose committed offset is beyond what Redis has applied (one line
    each), and the committed offsets of the events and catalog topics."""
    loop = asyncio.get_running_loop()
    committed = await loop.run_in_executor(
        None, lambda: kafka_tools.committed_offsets(settings, settings.app_id))
    topics = (settings.topic_events, settings.topic_catalog)
    found: Offsets = {(tp.topic, tp.partition): off for tp, off in committed.items()
                      if tp.topic in topics}
    behind = []
    for topic in topics:
        applied = await redis.hgetall(keys.applied(topic))
        for (name, partition), offset in sorted(found.items()):
            have = applied.get(str(partition).encode(), applied.get(str(partition)))
            have_n = int(have) if have is not None else 0
            if name == topic and have_n < offset:
                behind.append(f"{topic}[{partition}] applied {have_n} < committed {offset}")
    return behind, found


async def ahead_of_log(settings: Settings, redis: aioredis.Redis,
                       keys: RedisKeys) -> list[str]:
    """Partitions whose applied offset in Redis is beyond the log's end offset (one line
    each): Redis holds the effects of events this log does not have, because the log is
    another one (a Kafka log deleted or recreated, another cluster shape of the embedded
    stack, a compose volume removed while Redis kept its file). Apache Kafka only: its
    end offsets are exact, while Tansu's may answer low (:mod:`core.kafka_tools`)."""
    from core.broker import is_tansu

    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(None, lambda: is_tansu(settings)):
        return []
    ahead = []
    for topic in (settings.topic_events, settings.topic_catalog):
        applied = await redis.hgetall(keys.applied(topic))
        if not applied:
            continue
        ends = await loop.run_in_executor(
            None, functools.partial(kafka_tools.high_watermarks, settings, topic))
        for raw, have in sorted(applied.items()):
            end = ends.get(int(raw))
            if end is not None and int(have) > end:  # a partition unknown: no verdict
                ahead.append(f"{topic}[{int(raw)}] applied {int(have)} > log end {end}")
    return ahead


async def forget_other_log(redis: aioredis.Redis, keys: RedisKeys,
                           topics: Iterable[str]) -> None:
    """Drop the offsets Redis keeps of another log (applied offsets, replay marks): the
    wipe keeps them, and against this log they would mean nothing."""
    for key in (*(keys.applied(t) for t in topics), keys.forwarded, keys.replay_ends):
        await redis.delete(key)  # one by one: their slots differ on a Redis Cluster


async def _wipe(redis: aioredis.Redis, keys: RedisKeys) -> int:
    deleted = 0
    for pattern in keys.derived_patterns():
        batch: list[Any] = []
        async for key in redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await redis.unlink(*batch))
    return deleted


async def take_rebuild_lock(redis: aioredis.Redis, keys: RedisKeys) -> str | None:
    """Take the one lock of wipes and rebuilds (``RedisKeys.rebuild_lock``, expiring
    after :data:`REBUILD_LOCK_TTL_S`), so one worker at a time wipes or rebuilds Redis:
    the holder's mark, or None when another process holds it. The holder releases it
    with :func:`release_rebuild_lock`; one that works longer keeps it with
    :func:`keep_rebuild_lock`."""
    holder = f"{os.getpid()}-{time.time():.3f}"
    taken = await redis.set(keys.rebuild_lock, holder, nx=True, ex=REBUILD_LOCK_TTL_S)
    return holder if taken else None


async def keep_rebuild_lock(redis: aioredis.Redis, keys: RedisKeys, holder: str,
                            every_s: float = REBUILD_LOCK_TTL_S / 4) -> None:
    """Renew the lock ``holder`` took every ``every_s`` until cancelled: a rebuild of a
    long log outlasts the lock's expiry, and another worker then took the lock and
    rebuilt at the same time. Stops once the lock is not ``holder``'s (it expired in an
    outage and another took it); a Redis error is retried at the next renewal. The check
    and the renewal are one script: a lock taken over in between is not renewed."""
    while True:
        await asyncio.sleep(every_s)
        try:
            if not await _HOLDERS.run(redis, [keys.rebuild_lock],
                                      [holder, REBUILD_LOCK_TTL_S]):
                return
        except (RedisError, OSError):
            continue


async def release_rebuild_lock(redis: aioredis.Redis, keys: RedisKeys, holder: str) -> None:
    """Release the lock ``holder`` took, unless it is another's by now: a holder whose lock
    expired (cut off from Redis longer than :data:`REBUILD_LOCK_TTL_S`) released the next
    holder's when it finished, and a third worker then wiped or rebuilt alongside it."""
    await _HOLDERS.run(redis, [keys.rebuild_lock], [holder])


def release_lock_sync(client: Any, key: str, holder: str) -> None:
    """Delete the lock ``key`` in one step only while it is still ``holder``'s, from a
    synchronous client (the retrain's lock): a GET then a DEL could delete the lock
    another process took between the two (this one's had expired)."""
    client.eval(_HOLDERS.source, 1, key, holder)


async def recover_stale(redis: aioredis.Redis, keys: RedisKeys, reason: str,
                        known: Offsets, *, other_log: Iterable[str] = ()) -> bool:
    """Wipe the derived state and drop the sentinel so the log is replayed; ``known``
    offsets are recorded as applied afterwards. With ``other_log`` (topics), Redis was
    derived from another log: its offsets of those topics go too. False when another
    worker held the rebuild lock (this one waited until it was released)."""
    holder = await take_rebuild_lock(redis, keys)
    if holder is None:
        deadline = time.monotonic() + WAIT_FOR_WIPE_S
        while await redis.exists(keys.rebuild_lock) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return False
    # renewed while it wipes: a large Redis takes longer than the lock's expiry, and a
    # `streamrec rebuild` taking the lock meanwhile would replay into what is wiped
    keeper = asyncio.create_task(keep_rebuild_lock(redis, keys, holder))
    try:
        topics = list(other_log)
        log.error("Redis %s the log (%s): its lists and counts are stale; wiping them and "
                  "rebuilding from the log", "does not match" if topics else "is behind",
                  reason)
        deleted = await _wipe(redis, keys)
        if topics:
            await forget_other_log(redis, keys, topics)
        for (topic, partition), offset in known.items():
            await redis.hset(keys.applied(topic), str(partition), offset)
        await redis.delete(keys.sentinel)
        log.warning("wiped %d derived keys; the rebuild from offset 0 follows", deleted)
    finally:
        keeper.cancel()
        await release_rebuild_lock(redis, keys, holder)
    return True


async def forwarded_marks(redis: aioredis.Redis, keys: RedisKeys) -> dict[int, int]:
    """Per ``events`` partition, the offset below which the messages' forwards are on
    the log already (``RedisKeys.forwarded``: set by ``streamrec replay --rebuild``)."""
    raw = await redis.hgetall(keys.forwarded)
    return {int(p): int(o) for p, o in raw.items()}


async def drop_passed_marks(redis: aioredis.Redis, key: str, marks: dict[int, int],
                            reached: dict[int, int]) -> None:
    """Drop from ``marks`` and from the hash ``key`` the per-partition offset marks a
    replay left (``RedisKeys.forwarded``, ``RedisKeys.replay_ends``) that a batch reached
    (``reached``: the offset per partition the caller compares with its mark): a later
    reset of the log, a Tansu restarted empty, must not find a stale mark."""
    passed = [p for p, end in reached.items() if p in marks and end >= marks[p]]
    if passed:
        await redis.hdel(key, *map(str, passed))
        for partition in passed:
            del marks[partition]
