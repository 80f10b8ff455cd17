"""``AsyncClient``: the streamrec HTTP API for Python servers and tools (asyncio).

Tracking is fire-and-forget with guarantees: :meth:`AsyncClient.track` checks the event
against the API's own schema, gives it an ``event_id`` and a timestamp there and then, and
queues it; batches go out in the background (:mod:`streamrec.client.outbox`) and are
retried with the same ids (:mod:`streamrec.client.retry`), so a retry never counts an
event twice. :meth:`AsyncClient.flush` returns once everything tracked so far got its
202 and raises :class:`DeliveryError` for what could not be delivered. Reads and catalog
writes are plain calls with the same retry rule, returning the models of ``schemas``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from core.limits import MAX_BATCH_EVENTS, MAX_BATCH_ITEMS, MAX_BODY_BYTES
from schemas import (
    Accepted,
    CatalogItem,
    EventsAccepted,
    IdentifyRequest,
    ItemUpdate,
    ReadyStatus,
    RecommendationList,
    TrackingEvent,
)
from streamrec.client import wire
from streamrec.client.errors import (
    ClientClosed,
    ConnectionFailed,
    DeliveryError,
    InvalidPayload,
    PayloadTooLarge,
    StreamrecError,
    ValidationFailed,
    error_from_response,
)
from streamrec.client.outbox import Outbox
from streamrec.client.retry import RetryPolicy
from streamrec.client.wire import QueryValue, chunks, id_list, segment, too_large
from streamrec.client.wire import query as query_params

log = logging.getLogger("streamrec.client")

TRACKING, READ, ADMIN = "tracking", "read", "admin"


@dataclass
class ClientStats:
    """What a client did: requests by outcome, retries, and events by fate."""

    requests: int = 0
    retries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    events_tracked: int = 0
    events_delivered: int = 0
    events_failed: int = 0
    batches: int = 0


def _validated(model: type[BaseModel], payload: Mapping[str, Any], what: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise InvalidPayload(f"invalid {what}: {errors[0]['msg']}", errors) from None


class AsyncClient:
    """The streamrec API: ``track``/``identify`` (tracking key), recommendation reads (read
    key), catalog writes (admin key). An admin key stands in for a missing other key; no
    key at all sends none (an API with auth off).

    ``batch_size`` (≤ 500), ``flush_interval_s``, ``max_queue`` and ``max_in_flight``
    shape the background delivery (:mod:`streamrec.client.outbox`); ``max_body_bytes``
    (the API's ``STREAMREC_MAX_BODY_BYTES``) bounds every request body; ``retry`` is the
    retry rule of every request; ``on_error`` is called with each :class:`DeliveryError`
    as it happens (``flush`` raises them too); ``transport`` replaces the network (tests).
    """

    def __init__(self, base_url: str, tracking_key: str | None = None,
                 read_key: str | None = None, admin_key: str | None = None, *,
                 timeout_s: float = 10.0, retry: RetryPolicy | None = None,
                 batch_size: int = 100, flush_interval_s: float = 1.0,
                 max_queue: int = 10_000, max_in_flight: int = 1,
                 max_body_bytes: int = MAX_BODY_BYTES,
                 on_error: Callable[[DeliveryError], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 trust_env: bool = True) -> None:
        self._keys = {TRACKING: tracking_key or admin_key, READ: read_key or admin_key,
                      ADMIN: admin_key}
        self.retry = retry or RetryPolicy()
        if max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024 (as the API's)")
        self._max_body = max_body_bytes
        self.stats = ClientStats()
        self._on_error = on_error
        self._failures: list[DeliveryError] = []
        self._closed = False
        connections = max_in_flight + 4
        self._http = httpx.AsyncClient(
            base_url=wire.checked_base_url(base_url),
            timeout=httpx.Timeout(timeout_s, pool=None),
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections),
            transport=transport, trust_env=trust_env,
            headers={"User-Agent": "streamrec-python-client"})
        self._outbox = Outbox(self._deliver, batch_size=min(batch_size, MAX_BATCH_EVENTS),
                              flush_interval_s=flush_interval_s, max_queue=max_queue,
                              max_in_flight=max_in_flight)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except DeliveryError as failure:  # do not mask the exception already under way
            log.error("streamrec client closed after an error: %s", failure)

    @property
    def queued(self) -> int:
        """Tracked events not yet handed to a delivery."""
        return self._outbox.queued

    # -- requests ----------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, role: str | None = None,
                      json: Any = None, params: Mapping[str, QueryValue] | None = None,
                      retry: RetryPolicy | None = None) -> httpx.Response:
        """One API call under the retry rule: the 2xx answer, or the error it ended with.

        ``role`` picks the key sent as ``X-API-Key``. The body is encoded once, so every
        attempt sends the same bytes.
        """
        if self._closed:
            raise ClientClosed("the client is closed")
        self._outbox.check_loop()
        policy = retry or self.retry
        key = self._keys.get(role or "")
        headers = {"X-API-Key": key} if key else {}
        content = None
        if json is not None:
            content = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        request = wire.build(self._http, method, path, content=content,
                             params=query_params(params or {}), headers=headers)
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                self.stats.statuses["connection_error"] += 1
                wait = policy.next_wait(attempt, None)
                if wait is None:
                    raise ConnectionFailed(f"{method} {path}: {exc!r}") from exc
            else:
                self.stats.statuses[str(response.status_code)] += 1
                if response.is_success:
                    return response
                wait = policy.next_wait(attempt, response.status_code,
                                        response.headers.get("Retry-After"))
                if wait is None:
                    raise error_from_response(response)
            attempt += 1
            self.stats.retries += 1
            log.debug("%s %s: retry %d in %.2fs", method, path, attempt, wait)
            await asyncio.sleep(wait)

    # -- tracking ----------------------------------------------------------------------------
    async def track(self, type: str, *, user_id: str | None = None,
                    anonymous_id: str | None = None, item_id: str | None = None,
                    item_ids: Sequence[str] | None = None,
                    recommendation_id: str | None = None, quantity: int | None = None,
                    price: float | None = None, timestamp: datetime | str | None = None,
                    context: Mapping[str, Any] | None = None,
                    event_id: str | None = None) -> str:
        """Queue one event (any type of ``POST /v1/events``); returns its ``event_id``.

        Raises :class:`InvalidPayload` at once for an event the API would refuse; waits
        while the queue is full.
        """
        event = {"type": type, "user_id": user_id, "anonymous_id": anonymous_id,
                 "item_id": item_id, "item_ids": id_list(item_ids),
                 "recommendation_id": recommendation_id, "quantity": quantity,
                 "price": price, "timestamp": timestamp, "context": context,
                 "event_id": event_id}
        return await self.track_event({k: v for k, v in event.items() if v is not None})

    async def track_event(self, event: Mapping[str, Any]) -> str:
        """:meth:`track` for an event given as the ``POST /v1/events`` object."""
        if self._closed:
            raise ClientClosed("the client is closed")
        stamped = dict(event)
        if stamped.get("event_id") is None:  # absent or null: the id retries keep
            stamped["event_id"] = str(uuid.uuid4())
        if stamped.get("timestamp") is None:
            stamped["timestamp"] = datetime.now(UTC)
        model: TrackingEvent = _validated(TrackingEvent, stamped, "event")
        body = model.model_dump(mode="json", exclude_none=True)
        try:
            await self._outbox.put(body)
        except RuntimeError:
            raise ClientClosed("the client is closed") from None
        self.stats.events_tracked += 1
        return str(body["event_id"])

    async def identify(self, anonymous_id: str, user_id: str) -> Accepted:
        """Link an anonymous visitor to a user (``POST /v1/identify``).

        Events tracked before are delivered first, so the visitor's anonymous history is
        on the log ahead of the link; returns once the API acknowledged it.
        """
        body = {"anonymous_id": anonymous_id, "user_id": user_id}
        _validated(IdentifyRequest, body, "identify")
        await self._outbox.drain()
        response = await self.request("POST", "/v1/identify", role=TRACKING, json=body)
        return Accepted.model_validate(response.json())

    async def flush(self) -> None:
        """Deliver everything tracked so far; raises :class:`DeliveryError` for events
        that could not be delivered since the last ``flush``."""
        if self._closed:
            raise ClientClosed("the client is closed")
        await self._outbox.drain()
        self._raise_failures()

    async def close(self) -> None:
        """Flush, then release the connections (also on failure; raises like ``flush``)."""
        if self._closed:
            return
        try:
            await self._outbox.close()
        finally:
            self._closed = True
            with contextlib.suppress(RuntimeError):  # the connections of an ended loop
                await self._http.aclose()
        self._raise_failures()

    def _raise_failures(self) -> None:
        failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError([i for f in failures for i in f.event_ids],
                                [e for f in failures for e in f.errors])

    def _failed(self, events: Sequence[Mapping[str, Any]], error: StreamrecError) -> None:
        failure = DeliveryError([str(e["event_id"]) for e in events], [error])
        self.stats.events_failed += len(events)
        self._failures.append(failure)
        log.warning("streamrec client: %s", failure)
        if self._on_error is not None:
            try:
                self._on_error(failure)
            except Exception:  # noqa: BLE001 - a callback must not stop deliveries
                log.exception("streamrec client: on_error callback failed")

    async def _deliver(self, events: list[dict[str, Any]]) -> None:
        """POST one batch. A 413, or a 422 for too many events, halves it; another 422
        drops the events it names and sends the rest once more; any other failure drops
        the batch (recorded for ``flush``). A batch over ``max_body_bytes`` is halved
        before it is sent: the API would cut the connection."""
        if len(events) > 1 and too_large(events, self._max_body):
            half = len(events) // 2
            await self._deliver(events[:half])
            await self._deliver(events[half:])
            return
        self.stats.batches += 1
        try:
            response = await self.request("POST", "/v1/events", role=TRACKING,
                                          json={"events": events})
        except (PayloadTooLarge, ValidationFailed) as exc:
            # a body over the size cap, or more events than this API takes per request
            # (STREAMREC_MAX_BATCH_EVENTS below batch_size): halves, each sent on its own
            too_many = isinstance(exc, PayloadTooLarge) or any(
                d.get("loc") == ["events"] and d.get("type") == "too_long" for d in exc.detail)
            if too_many and len(events) > 1:
                half = len(events) // 2
                await self._deliver(events[:half])
                await self._deliver(events[half:])
                return
            if isinstance(exc, PayloadTooLarge):
                self._failed(events, exc)
                return
            for d in exc.detail:  # the batch is the client's: say which event, by id
                if isinstance(d.get("index"), int) and 0 <= d["index"] < len(events):
                    d["event_id"] = events[d["index"]]["event_id"]
            named = {d["index"] for d in exc.detail if "event_id" in d}
            if not named or len(named) >= len(events):
                self._failed(events, exc)
                return
            self._failed([e for i, e in enumerate(events) if i in named], exc)
            events = [e for i, e in enumerate(events) if i not in named]
            try:
                response = await self.request("POST", "/v1/events", role=TRACKING,
                                              json={"events": events})
            except StreamrecError as again:
                self._failed(events, again)
                return
        except StreamrecError as exc:
            self._failed(events, exc)
            return
        accepted = EventsAccepted.model_validate(response.json())
        self.stats.events_delivered += accepted.accepted

    # -- reads -------------------------------------------------------------------------------
    async def _list(self, path: str, params: Mapping[str, QueryValue]) -> RecommendationList:
        response = await self.request("GET", path, role=READ, params=params)
        return RecommendationList.model_validate(response.json())

    async def recommendations(self, user_id: str, n: int = 10, context: str = "home", *,
                              item_id: str | None = None,
                              exclude: Sequence[str] | None = None,
                              **params: QueryValue) -> RecommendationList:
        """``GET /v1/users/{user_id}/recommendations`` (user or anonymous id); any other
        parameter of the API (``category``, ``price_min``, ``explain``, ...) passes on."""
        return await self._list(f"/v1/users/{segment(user_id)}/recommendations",
                                {"n": n, "context": context, "item_id": item_id,
                                 "exclude": exclude, **params})

    async def similar(self, item_id: str, n: int = 10, *, user_id: str | None = None,
                      **params: QueryValue) -> RecommendationList:
        """``GET /v1/items/{item_id}/similar``."""
        return await self._list(f"/v1/items/{segment(item_id)}/similar",
                                {"n": n, "user_id": user_id, **params})

    async def popular(self, n: int = 10, **params: QueryValue) -> RecommendationList:
        """``GET /v1/popular``."""
        return await self._list("/v1/popular", {"n": n, **params})

    async def trending(self, n: int = 10, **params: QueryValue) -> RecommendationList:
        """``GET /v1/trending``."""
        return await self._list("/v1/trending", {"n": n, **params})

    async def ready(self) -> ReadyStatus:
        """``GET /readyz`` once, without retries: whether Kafka and Redis are reachable
        (a 503 is an answer here, not an error). :class:`ConnectionFailed` when no API
        answers."""
        if self._closed:
            raise ClientClosed("the client is closed")
        self._outbox.check_loop()
        try:
            response = await self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"GET /readyz: {exc!r}") from exc
        if response.status_code not in (200, 503):
            raise error_from_response(response)
        return ReadyStatus.model_validate(response.json())

    # -- catalog -----------------------------------------------------------------------------
    async def upsert_items(self, items: Iterable[CatalogItem | Mapping[str, Any]]) -> Accepted:
        """``POST /v1/items`` in chunks of at most 1000 items and ``max_body_bytes``
        (halved again on a 413): each item's full state."""
        bodies = [item.model_dump(mode="json") if isinstance(item, BaseModel)
                  else _validated(CatalogItem, item, "item").model_dump(mode="json")
                  for item in items]
        ids: list[str] = []
        for chunk in chunks(bodies, MAX_BATCH_ITEMS, self._max_body):
            ids.extend(await self._post_items(chunk))
        return Accepted(accepted=len(bodies), ids=ids)

    async def _post_items(self, chunk: list[dict[str, Any]]) -> list[str]:
        try:
            response = await self.request("POST", "/v1/items", role=ADMIN,
                                          json={"items": chunk})
        except PayloadTooLarge:  # a deployment's body cap below max_body_bytes
            if len(chunk) < 2:
                raise
            half = len(chunk) // 2
            return await self._post_items(chunk[:half]) + await self._post_items(chunk[half:])
        return Accepted.model_validate(response.json()).ids

    async def upsert_item(self, item_id: str,
                          item: ItemUpdate | Mapping[str, Any]) -> Accepted:
        """``PUT /v1/items/{item_id}``: one item's full state."""
        model = item if isinstance(item, BaseModel) else _validated(ItemUpdate, item, "item")
        response = await self.request("PUT", f"/v1/items/{segment(item_id)}",
                                      role=ADMIN, json=model.model_dump(mode="json"))
        return Accepted.model_validate(response.json())

    async def delete_item(self, item_id: str) -> Accepted:
        """``DELETE /v1/items/{item_id}``: never recommended again."""
        response = await self.request("DELETE", f"/v1/items/{segment(item_id)}",
                                      role=ADMIN)
        return Accepted.model_validate(response.json())
