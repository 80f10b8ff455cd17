"""From request payloads to Kafka messages: tracking events, identify, catalog records.

The pure functions here validate and shape; :class:`Ingestor` sends through the
producer and answers only after Kafka acknowledged everything.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import PayloadTooLarge, ServiceUnavailable, ValidationFailed, validation_detail
from api.idempotency import IdempotencyStore, body_hash
from api.metrics import Metrics
from api.producer import EventProducer, Message
from api.tracking_limits import Client, TrackingLimiter
from core.kafka_tools import partition_of
from core.limits import FORGET_ANONS_MAX, MAX_MESSAGE_BYTES, links_ttl_s
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import (
    Accepted,
    CatalogItem,
    CatalogRecord,
    EventEnvelope,
    EventsAccepted,
    IdentifyRequest,
    ItemUpdate,
    TopicEvent,
    TrackingEvent,
)

#: Spacing of the receive times of one request's events. Equal receive times would leave
#: the order among them to the (client-chosen) event ids, and an id ordered before every
#: event already seen would count again (recommender.abuse decides from the entries
#: ordered before an event).
RECEIVE_STEP_S = 1e-6

log = logging.getLogger("streamrec.api")
_KEYS = RedisKeys()
#: KEYS[1] = a user's anonymous ids (``user_anons``); ARGV = the anonymous id, most ids,
#: lifetime (s). Adds it unless the set is full, as the worker's identify does, and
#: gives the set the lifetime the worker gives it (``core.limits.links_ttl_s``).
_LINK = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
   and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _new_id(index: int = 0) -> str:
    return str(uuid.uuid4())


def validation_context(settings: Settings, now: float) -> dict[str, float]:
    """What the schemas' timestamp check needs (``schemas.events.check_timestamp``)."""
    return {"max_future_s": settings.max_future_skew_s, "now": now}


def parse_events(payload: Any, *, max_events: int,
                 context: Mapping[str, Any] | None = None) -> list[TrackingEvent]:
    """One event object or ``{"events": [...]}`` → validated events, in request order.

    ``context`` is the validation context (:func:`validation_context`: the future-time
    bound). Raises ``ValidationFailed`` listing every problem, each per-event entry as
    ``{"index", "loc", "msg", "type"}`` (``loc`` relative to the event).
    """
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "expected one event object or {\"events\": [...]}",
            detail=[{"loc": ["body"], "msg": "Input should be an object", "type": "model_type"}],
        )
    if "events" in payload:
        raw = payload["events"]
        if not isinstance(raw, list):
            raise ValidationFailed(
                "events must be a list",
                detail=[{"loc": ["events"], "msg": "Input should be a valid list",
                         "type": "list_type"}],
            )
        if not raw:
            raise ValidationFailed(
                "events is empty",
                detail=[{"loc": ["events"], "msg": "List should have at least 1 item",
                         "type": "too_short"}],
            )
        if len(raw) > max_events:
            raise ValidationFailed(
                f"at most {max_events} events per request, got {len(raw)}",
                detail=[{"loc": ["events"],
                         "msg": f"List should have at most {max_events} items",
                         "type": "too_long"}],
            )
    else:
        raw = [payload]
    events: list[TrackingEvent] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            problems.append({"index": index, "loc": [], "msg": "Input should be an object",
                             "type": "model_type"})
            continue
        try:
            events.append(TrackingEvent.model_validate(item, context=context))
        except ValidationError as exc:
            problems.extend(
                {"index": index, "loc": e["loc"], "msg": e["msg"], "type": e["type"]}
                for e in validation_detail(exc.errors())
            )
    if problems:
        invalid = len({p["index"] for p in problems})
        raise ValidationFailed(
            f"{invalid} of {len(raw)} events invalid; none were accepted: "
            f"{_first_problem(problems)}", detail=problems
        )
    return events


def _first_problem(problems: Sequence[dict[str, Any]]) -> str:
    """``event I, field: what is wrong`` of the first problem: the message says what is
    wrong, not only how many events are (``detail`` lists every problem)."""
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or "the event"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"event {first['index']}, {field}: {first['msg']}{more}"


def to_topic_events(
    events: Sequence[TrackingEvent],
    *,
    received_at: float,
    new_id: Callable[[int], str] = _new_id,
) -> list[TopicEvent]:
    """Topic form of each event; a missing ``event_id`` becomes ``new_id(index)`` (a fresh
    UUID4, or an id derived from the request's ``Idempotency-Key``).

    Each event's ``received_at`` is ``received_at`` plus its index in microseconds: the
    server's order of arrival, which the worker's abuse rules take as the order of the
    entity's events (:data:`RECEIVE_STEP_S`).
    """
    topic_events = []
    for index, event in enumerate(events):
        try:
            topic_events.append(TopicEvent.from_tracking(
                event, event_id=event.event_id or new_id(index),
                received_at=received_at + index * RECEIVE_STEP_S,
            ))
        except ValidationError as exc:  # a tracking event the topic model refuses
            detail = [{"index": index, **e} for e in validation_detail(exc.errors())]
            raise ValidationFailed(
                f"event {index} cannot be recorded; none were accepted: {_first_problem(detail)}",
                detail=detail,
            ) from exc
    return topic_events


def _envelope_bytes(events: Sequence[TopicEvent]) -> bytes:
    envelope = EventEnvelope(events=list(events))
    return orjson.dumps(envelope.model_dump(exclude_none=True))


def envelope_messages(
    events: Sequence[TopicEvent], *, partitions: int, max_bytes: int = MAX_MESSAGE_BYTES
) -> list[Message]:
    """Group events into one ``EventEnvelope`` message per partition (ascending order).

    Each event goes to the partition its own entity key hashes to (the default Kafka
    partitioner, :func:`core.kafka_tools.partition_of`), so an entity always lives
    on one partition and its events keep request order; the message is keyed by its
    first entity and carries its partition explicitly. The worker groups by entity, not
    by message key. One message per partition instead of per entity: a 500-event Taobao
    request was ~490 messages, and producer sends were most of the API's time. A message
    over ``max_bytes`` is split in halves (same partition, order kept).
    """
    by_partition: dict[int, tuple[bytes, list[TopicEvent]]] = {}
    for event in events:
        key = event.entity.encode("utf-8")
        part = partition_of(key, partitions)
        by_partition.setdefault(part, (key, []))[1].append(event)
    messages: list[Message] = []

    def add(key: bytes, part: int, group: Sequence[TopicEvent]) -> None:
        value = _envelope_bytes(group)
        if len(value) > max_bytes and len(group) > 1:
            half = len(group) // 2
            add(key, part, group[:half])
            add(key, part, group[half:])
        elif len(value) > max_bytes:
            index = next(i for i, e in enumerate(events) if e is group[0])
            raise PayloadTooLarge(
                f"event {index} is {len(value)} bytes as a Kafka message; at most "
                f"{max_bytes} fit", detail=[{"index": index, "loc": [],
                                             "msg": "event too large", "type": "too_large"}])
        else:
            messages.append((key, value, part))

    for part in sorted(by_partition):
        key, group = by_partition[part]
        add(key, part, group)
    return messages


def identify_event(request: IdentifyRequest, *, received_at: float) -> TopicEvent:
    """The ``identify`` topic event linking an anonymous id to a user (the request's
    timestamp was checked by the schema)."""
    ts = request.timestamp.timestamp() if request.timestamp is not None else received_at
    return TopicEvent.model_validate(
        {
            "event_id": _new_id(),
            "type": "identify",
            "anonymous_id": request.anonymous_id,
            "user_id": request.user_id,
            "ts": ts,
            "received_at": received_at,
        }
    )


def catalog_record(
    item_id: str, update: ItemUpdate | None, *, updated_at: float, deleted: bool = False
) -> CatalogRecord:
    """A ``catalog`` topic record: the item's full state, or its deletion."""
    fields: Mapping[str, Any] = (
        update.model_dump(exclude={"item_id"}) if update is not None else {}
    )
    if deleted:
        fields = {**fields, "in_stock": False}
    return CatalogRecord(item_id=item_id, deleted=deleted, updated_at=updated_at, **fields)


def catalog_message(record: CatalogRecord) -> Message:
    """Kafka message of a catalog record, keyed by item id."""
    return (record.item_id.encode("utf-8"), orjson.dumps(record.model_dump(mode="json")),
            None)


class Ingestor:
    """Validated writes → Kafka; answers only after Kafka acknowledged every message.

    Tracking writes first pass the per-client limits (:class:`TrackingLimiter`: per key,
    source address and user/anonymous id, counting events) and, with an
    ``Idempotency-Key``, the replay check (:class:`IdempotencyStore`).
    """

    def __init__(self, settings: Settings, producer: EventProducer, metrics: Metrics,
                 limiter: TrackingLimiter, idempotency: IdempotencyStore,
                 redis: Redis | None = None) -> None:
        """``redis``: where an identify's link is recorded at once (:meth:`identify`)."""
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._limiter = limiter
        self._idempotency = idempotency
        self._link = redis.register_script(_LINK) if redis is not None else None

    async def track(self, payload: Any, client: Client,
                    idempotency_key: str | None = None) -> tuple[EventsAccepted, bool]:
        """Validate a tracking payload and produce it: the 202 body, and whether it is
        the stored answer of an earlier request with the same ``Idempotency-Key``.

        Events without ``event_id`` get server-made ids (derived from the
        ``Idempotency-Key`` when there is one, so a retried batch gets the same ids);
        every 503 carries them (``event_ids``) so the client can retry with them.
        """
        now = time.time()
        events = parse_events(payload, max_events=self._settings.max_batch_events,
                              context=validation_context(self._settings, now))
        store = self._idempotency
        digest = None
        if idempotency_key:  # one namespace per API key and the ids the batch names
            named = (who for e in events for who in (e.user_id, e.anonymous_id) if who)
            digest = store.digest(client.scope, idempotency_key, named)
        new_id = store.id_maker(digest) if digest else _new_id
        topic_events = to_topic_events(events, received_at=now, new_id=new_id)
        answer = EventsAccepted(accepted=len(topic_events),
                                event_ids=[e.event_id for e in topic_events])
        fingerprint = body_hash(payload) if digest else b""
        try:
            if digest and await store.seen(digest, fingerprint):
                self._metrics.idempotent_replays.inc()
                return answer, True
            costs = Counter(e.entity for e in topic_events)
            await self._limiter.admit(client, costs)
            await self._send_events(topic_events)
        except ServiceUnavailable as exc:
            exc.extra["event_ids"] = answer.event_ids
            raise
        if digest:
            await store.remember(digest, fingerprint)
        self._metrics.events_accepted.inc(len(topic_events))
        return answer, False

    async def identify(self, request: IdentifyRequest, client: Client) -> Accepted:
        """Produce an ``identify`` event keyed by the anonymous id (one event against the
        limits of both ids)."""
        event = identify_event(request, received_at=time.time())
        try:
            await self._limiter.admit(client, {request.anonymous_id: 1, request.user_id: 1},
                                      events=1)
            await self._send_events([event])
        except ServiceUnavailable as exc:
            exc.extra["event_ids"] = [event.event_id]
            raise
        # An identify is a tracking event Kafka acknowledged, as the workers count it.
        self._metrics.events_accepted.inc()
        await self._remember_link(request.user_id, request.anonymous_id)
        return Accepted(accepted=1, ids=[event.event_id])

    async def _remember_link(self, user_id: str, anonymous_id: str) -> None:
        """Record that ``anonymous_id`` is identified as ``user_id`` (``user_anons``, as
        the worker does when it applies the identify): a ``DELETE /v1/users/{user_id}``
        right after this 202 forgets the anonymous id too. Best effort: without Redis,
        the worker records it."""
        if self._link is None or user_id == anonymous_id:
            return
        try:
            await self._link(keys=[_KEYS.user_anons(user_id)],
                             args=[anonymous_id, FORGET_ANONS_MAX, links_ttl_s(
                                 self._settings.entity_ttl_s, self._settings.anonymous_ttl_s)])
        except (RedisError, OSError) as exc:
            log.debug("identify link not recorded now (the worker will): %r", exc)

    async def upsert_items(self, items: Sequence[CatalogItem]) -> Accepted:
        """Produce one catalog record per item."""
        if len(items) > self._settings.max_batch_items:
            raise ValidationFailed(
                f"at most {self._settings.max_batch_items} items per request",
                detail=[{"loc": ["body", "items"],
                         "msg": f"List should have at most {self._settings.max_batch_items}"
                                " items", "type": "too_long"}],
            )
        now = time.time()
        records = [catalog_record(item.item_id, item, updated_at=now) for item in items]
        return await self._send_records(records)

    async def upsert_item(self, item_id: str, update: ItemUpdate) -> Accepted:
        """Produce one item's full state."""
        return await self._send_records([catalog_record(item_id, update, updated_at=time.time())])

    async def delete_item(self, item_id: str) -> Accepted:
        """Produce a deletion record; the item is never recommended again."""
        record = catalog_record(item_id, None, updated_at=time.time(), deleted=True)
        return await self._send_records([record])

    async def _send_records(self, records: Sequence[CatalogRecord]) -> Accepted:
        await self._send(self._settings.topic_catalog, [catalog_message(r) for r in records])
        self._metrics.catalog_records.inc(len(records))
        return Accepted(accepted=len(records), ids=[r.item_id for r in records])

    async def _send_events(self, events: Sequence[TopicEvent]) -> None:
        topic = self._settings.topic_events
        try:
            partitions = await self._producer.partition_count(topic)
        except Exception:
            self._metrics.produce_failures.inc()
            raise
        await self._send(topic, envelope_messages(events, partitions=partitions))

    async def _send(self, topic: str, messages: Sequence[Message]) -> None:
        try:
            await self._producer.send_all(topic, messages)
        except Exception:
            self._metrics.produce_failures.inc()
            raise
