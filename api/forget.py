"""Forgetting a user: ``DELETE /v1/users/{user_id}`` (API.md "Merchandising").

The id and the anonymous ids identified as it (``RedisKeys.user_anons``, kept by the
worker) are forgotten at the moment of the request, ``at``:

1. a :class:`schemas.merch.ForgetRecord` per id on the compacted ``forgotten`` topic
   (key = the id): the registry every replay, rebuild and retrain reads *before* the
   events, so no event naming the id received until ``at`` is ever applied again;
2. a ``forget`` event per id on the ``events`` topic, keyed like the id's own events: the
   worker that owns the id deletes its history (the Faust table) and its Redis state in
   order with its events (``stream.forget``);
3. right away, best effort: ``forgotten`` in Redis (the worker screens every batch
   against it) and the id's per-entity keys (lists, cart, purchases, basket).

The 202 comes after Kafka acknowledged 1 and 2; then within a batch of the worker the
table and the item sets are clean too. What is kept, and why, is in docs/privacy.md.
"""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from redis.exceptions import RedisError

from api.deps import Services
from api.errors import RedisUnavailable
from api.ingest import envelope_messages
from core.limits import id_problem
from core.redis_keys import RedisKeys
from schemas import Accepted, TopicEvent
from schemas.merch import ForgetRecord

log = logging.getLogger("streamrec.api")

_KEYS = RedisKeys()


def forget_events(entities: list[str], user_id: str, at: float) -> list[TopicEvent]:
    """The ``forget`` events of ``entities`` (the user itself first, then its anonymous
    ids), each keyed by its own id."""
    return [TopicEvent(event_id=str(uuid.uuid4()), type="forget",
                       user_id=e if e == user_id else None,
                       anonymous_id=None if e == user_id else e, ts=at, received_at=at)
            for e in entities]


def forget_records(entities: list[str], user_id: str, at: float
                   ) -> list[tuple[bytes, bytes, int | None]]:
    """The ``forgotten`` topic messages of ``entities`` (key = the id)."""
    return [(e.encode("utf-8"),
             orjson.dumps(ForgetRecord(entity=e, at=at, user=None if e == user_id
                                       else user_id).model_dump(exclude_none=True)), None)
            for e in entities]


async def forget_user(services: Services, user_id: str) -> Accepted:
    """Forget ``user_id`` and its anonymous ids (steps 1-3 of the module doc); the ids
    forgotten. Raises ``RedisUnavailable`` when Redis cannot say which anonymous ids
    belong to the user, ``BrokerUnavailable`` when Kafka did not acknowledge."""
    try:
        raw = await services.redis.smembers(_KEYS.user_anons(user_id))  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(exc) from exc
    anons = {a.decode() if isinstance(a, bytes) else str(a) for a in raw}
    entities = [user_id, *sorted(a for a in anons if a != user_id and not id_problem(a))]
    at = time.time()
    settings, producer = services.settings, services.producer
    try:
        await producer.send_all(settings.topic_forgotten, forget_records(entities, user_id, at))
        partitions = await producer.partition_count(settings.topic_events)
        await producer.send_all(settings.topic_events, envelope_messages(
            forget_events(entities, user_id, at), partitions=partitions))
    except Exception:
        services.metrics.produce_failures.inc()  # a 503, as for every other write
        raise
    try:
        pipe = services.redis.pipeline(transaction=False)
        pipe.hset(_KEYS.forgotten, mapping={e: repr(at) for e in entities})
        for e in entities:  # one entity's keys share a slot (core.redis_keys)
            pipe.execute_command("UNLINK", *_KEYS.entity_keys(e))
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("forgot %s in Kafka; Redis follows when the worker applies it (%r)",
                    user_id, exc)
    log.info("forgot %d id(s): %s and its anonymous ids", len(entities), user_id)
    return Accepted(accepted=len(entities), ids=entities)
