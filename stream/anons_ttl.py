"""Users' sets of identified anonymous ids an older version wrote get their expiry, once.

Before the seventeenth session the worker kept ``u:{E}:{user}:anons`` without an expiry
(a ``PERSIST`` at every identify); since then the set lives ``links_ttl_s`` after its
last write (:func:`core.limits.links_ttl_s`). A set written before had none until its
user's next identify or linked event, so after an upgrade one key per user ever
identified stayed for good when the user did not come back. A worker timer gives each
set without an expiry that lifetime, counted from then (its last write is not
recorded), and marks the work done (:attr:`core.redis_keys.RedisKeys.anons_ttl_done`):
after that, one ``EXISTS`` per run.
"""

from __future__ import annotations

import logging
from typing import Any

from core.redis_keys import RedisKeys

log = logging.getLogger("streamrec.worker")

#: Keys read per SCAN call, and per pipelined ``TTL`` round.
SCAN_CHUNK = 1000


async def expire_unbounded_anons(client: Any, keys: RedisKeys, ttl_s: int) -> int:
    """Give every ``anons`` set without an expiry ``ttl_s`` seconds; how many had none.
    Idempotent: a set written meanwhile has its expiry already and is left alone."""
    fixed = 0
    batch: list[Any] = []

    async def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.ttl(key)
        lacking = [key for key, ttl in zip(batch, await pipe.execute(), strict=True)
                   if ttl == -1]
        if lacking:
            pipe = client.pipeline(transaction=False)
            for key in lacking:
                pipe.expire(key, ttl_s)
            await pipe.execute()
        return len(lacking)

    async for key in client.scan_iter(match=keys.pattern("user_anons"), count=SCAN_CHUNK):
        batch.append(key)
        if len(batch) >= SCAN_CHUNK:
            fixed += await flush()
            batch = []
    if batch:
        fixed += await flush()
    return fixed


async def ensure_anons_ttl(client: Any, keys: RedisKeys, ttl_s: int) -> bool:
    """:func:`expire_unbounded_anons` unless it is marked done, then mark it; True when
    it ran."""
    if await client.exists(keys.anons_ttl_done):
        return False
    fixed = await expire_unbounded_anons(client, keys, ttl_s)
    await client.set(keys.anons_ttl_done, "1")
    if fixed:
        log.info("gave %d users' sets of identified anonymous ids (written without one by an "
                 "older version) their expiry of %d s", fixed, ttl_s)
    return True
