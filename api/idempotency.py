"""``Idempotency-Key`` on ``POST /v1/events``: a whole batch made retry-safe.

A client that cannot (or does not) give every event an ``event_id`` sends one header per
batch instead. The key does two things:

1. **Stable ids.** Events without ``event_id`` get ids derived from the key and their
   position (``ik-<digest>-<index>``), so a retry of the same batch — even one racing the
   first attempt, or after a 503 whose events Kafka did take — carries the same ids, and
   the worker counts each event once (its dedupe is by event id).
2. **The stored answer.** After Kafka acknowledged the batch, a fingerprint of the body
   is kept in Redis for ``Settings.idempotency_ttl_s`` under a digest of (API key, the
   user and anonymous ids the batch names, header) — 32 bytes per key, whatever the batch
   size. A retry with the same key and body is answered 202 at once (header
   ``Idempotent-Replayed: true``) without producing again; the same key with a different
   body naming the same ids is a 422.

Keys are namespaced by the API key that sent them *and by the ids their batch names*: the
tracking key is public, so the key alone does not tell shoppers apart, and a header value
sent first by one holder of it would otherwise make another shopper's batch with that
value a 422 for the whole TTL. (Event ids are namespaced by entity for the same reason.)
When Redis cannot answer, the batch is produced anyway: the derived ids keep the counts
exact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ValidationFailed
from core.limits import id_problem
from core.redis_keys import RedisKeys

log = logging.getLogger("streamrec.api")

#: The request header.
HEADER = "Idempotency-Key"


def body_hash(payload: Any) -> bytes:
    """A fingerprint of a parsed JSON body, independent of key order and whitespace."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).digest()[:16]


def check_header(value: str) -> str:
    """The header value, or a 422 when it is not a valid id (1..256 characters, no control
    characters: the id rule of ``core.limits``)."""
    problem = id_problem(value)
    if problem:
        raise ValidationFailed(
            f"invalid {HEADER} header: {problem}",
            detail=[{"loc": ["header", HEADER], "msg": problem, "type": "value_error"}])
    return value


class IdempotencyStore:
    """Remembers which (client, Idempotency-Key) batches Kafka already acknowledged."""

    def __init__(self, redis: Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    @staticmethod
    def digest(scope: str, key: str, entities: Iterable[str] = ()) -> str:
        """A fixed-size name of ``key`` as sent by the client ``scope`` (its API key id)
        for a batch naming ``entities`` (its user and anonymous ids, in any order)."""
        named = "\x00".join(sorted(set(entities)))  # ids hold no control characters
        raw = f"{scope}\x00{check_header(key)}\x01{named}"
        return hashlib.sha256(raw.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]

    @staticmethod
    def id_maker(digest: str) -> Callable[[int], str]:
        """Event ids for a batch's events without ``event_id``: stable across retries."""
        return lambda index: f"ik-{digest[:24]}-{index}"

    async def seen(self, digest: str, fingerprint: bytes) -> bool:
        """True when this batch was acknowledged before (answer it again); a 422 when the
        key was used for a different body; False when new or when Redis cannot tell."""
        try:
            stored = await self._redis.get(self._keys.idempotency(digest))
        except (RedisError, OSError) as exc:
            log.debug("idempotency key not checked: %r", exc)
            return False
        if stored is None:
            return False
        if isinstance(stored, str):
            stored = stored.encode("latin-1")
        if stored != fingerprint.hex().encode():
            raise ValidationFailed(
                f"this {HEADER} was used for a different batch; send a new key",
                detail=[{"loc": ["header", HEADER], "msg": "key reused with another body",
                         "type": "idempotency_key_reused"}])
        return True

    async def remember(self, digest: str, fingerprint: bytes) -> None:
        """Record an acknowledged batch (best effort: the derived ids keep retries exact
        even when this is lost)."""
        try:
            await self._redis.set(self._keys.idempotency(digest), fingerprint.hex(),
                                  ex=self._ttl_s)
        except (RedisError, OSError) as exc:
            log.debug("idempotency key not stored: %r", exc)
