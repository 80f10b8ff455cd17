"""What a worker publishes about the pipeline itself: counters, heartbeats, dead-letter
reasons and freshness, read by ``streamrec status`` and the dashboard
(``core.pipeline_status``). A mixin of :class:`stream.redis_writer.RedisWriter`, which
provides the client ``r`` and the key names ``keys``.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from core.ops_records import DEAD_LETTERS_KEPT, WORKER_REGISTRY_HORIZON_S
from core.redis_keys import RedisKeys


class PipelineStatusWriter:
    """Writes the pipeline's own status records (not derived recommendation state)."""

    r: aioredis.Redis
    keys: RedisKeys

    async def count(self, **counters: int) -> None:
        """Add to pipeline-wide counters."""
        pipe = self.r.pipeline(transaction=False)
        for name, n in counters.items():
            if n:
                pipe.hincrby(self.keys.stats, name, n)
        await pipe.execute()

    async def heartbeat(self, worker_id: str, fields: dict[str, Any], ttl_s: int = 15) -> None:
        """Publish this worker's liveness and progress (and list it in the registry that
        ``streamrec status`` reads instead of scanning for heartbeats)."""
        key = self.keys.worker(worker_id)
        at = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
        pipe.expire(key, ttl_s)
        pipe.zadd(self.keys.worker_registry, {worker_id: at})
        pipe.zremrangebyscore(self.keys.worker_registry, "-inf",
                              at - WORKER_REGISTRY_HORIZON_S)
        await pipe.execute()

    async def any_other_behind(self, worker_id: str, fresh_s: float) -> bool:
        """Whether another live worker of the group said in its last heartbeat (at most
        ``fresh_s`` old) that it is behind the log: a retrain waits for the whole
        group, not only for this worker's partitions (with two workers, the first to
        drain its half could start one beside the other's catch-up, taking a core)."""
        now = time.time()
        ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in
               await self.r.zrangebyscore(self.keys.worker_registry, now - fresh_s, "+inf")]
        others = [other for other in ids if other != worker_id]
        if not others:
            return False
        pipe = self.r.pipeline(transaction=False)
        for other in others:
            pipe.hget(self.keys.worker(other), "behind")
        return any(flag in (b"1", "1") for flag in await pipe.execute())

    async def heartbeat_gone(self, worker_id: str) -> None:
        """Remove this worker's heartbeat and registry entry: it stopped cleanly, so
        ``streamrec status`` must not list it (nor its partitions) while it expires. No
        transaction: the heartbeat and the registry are in different slots (a Redis
        Cluster refuses a MULTI over both), and each removal stands on its own."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.keys.worker(worker_id))
        pipe.zrem(self.keys.worker_registry, worker_id)
        await pipe.execute()

    async def dead_lettered(self, entry: bytes) -> None:
        """Count one dead-lettered message and keep its reason (``ops_records``)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(self.keys.stats, "dead_lettered", 1)
        pipe.lpush(self.keys.dead_letters, entry)
        pipe.ltrim(self.keys.dead_letters, 0, DEAD_LETTERS_KEPT - 1)
        await pipe.execute()

    async def publish_freshness(self, quantiles: dict[Any, Any],
                                histogram: dict[Any, Any]) -> None:
        """This worker's freshness p50/p99 and histogram over its last samples, replacing
        the previous worker's in one transaction (readers see one worker's view), with
        the time they were published (readers tell a stopped worker's numbers by it)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.stats, mapping={**quantiles, "freshness_at": repr(time.time())})
        pipe.delete(self.keys.freshness_histogram)
        pipe.hset(self.keys.freshness_histogram, mapping=histogram)
        await pipe.execute()
