"""The Python client against an in-process fake API (``httpx.MockTransport``): retries
with the same event ids, Retry-After, giving up, errors, batching, back-pressure, the
blocking client. The real API is in tests/integration/test_client.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from schemas import RecommendationList, TrackingEvent
from streamrec.client import (
    AsyncClient,
    Client,
    ClientClosed,
    ConnectionFailed,
    DeliveryError,
    Forbidden,
    InvalidPayload,
    NotFound,
    RetryPolicy,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    parse_retry_after,
)
from tests.polling import wait_for_async

FAST = RetryPolicy(max_retries=3, base_delay_s=0.0, max_delay_s=0.0)
LIST = {"recommendation_id": "home.popular.x", "source": "popular", "model_version": "none",
        "items": [{"item_id": "a", "score": 1.0, "reason": "popular"}]}
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class FakeApi:
    """Records every request; ``fail(request, n)`` may answer instead (n = 1-based count
    of requests to that path)."""

    def __init__(self, fail: Callable[[httpx.Request, int], httpx.Response | None]
                 = lambda r, n: None) -> None:
        self.fail = fail
        self.requests: list[httpx.Request] = []
        self.accepted: list[str] = []
        self.gate: asyncio.Event | None = None

    def bodies(self, path: str) -> list[bytes]:
        return [r.content for r in self.requests if r.url.path == path]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        count = sum(r.url.path == path for r in self.requests)
        failed = self.fail(request, count)
        if failed is not None:
            return failed
        if path == "/v1/events":
            if self.gate is not None:
                await self.gate.wait()
            events = orjson.loads(request.content)["events"]
            ids = [TrackingEvent.model_validate(e).event_id or "" for e in events]
            self.accepted.extend(ids)
            return httpx.Response(202, json={"accepted": len(ids), "event_ids": ids})
        if path in ("/v1/identify", "/v1/items") or path.startswith("/v1/items/"):
            return httpx.Response(202, json={"accepted": 1, "ids": []})
        if path == "/readyz":
            return httpx.Response(503, json={"status": "not_ready",
                                             "checks": {"kafka": False, "redis": True}})
        return httpx.Response(200, json=LIST)


def client_for(api: FakeApi, **options: Any) -> AsyncClient:
    options.setdefault("retry", FAST)
    return AsyncClient("http://api", "trk", "rd", "adm",
                       transport=httpx.MockTransport(api), **options)


def error(status: int, code: str, headers: dict[str, str] | None = None,
          detail: list[dict[str, Any]] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": f"{code} happened"}}
    if detail is not None:
        body["detail"] = detail
    return httpx.Response(status, json=body, headers=headers)


# -- the retry rule ----------------------------------------------------------------------------
def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True),
                             now=now) == 7.0
    for bad in (None, "", "soon", "nan"):
        assert parse_retry_after(bad) is None


def test_next_wait_says_when_a_failure_is_final() -> None:
    policy = RetryPolicy(max_retries=2, base_delay_s=1.0, max_delay_s=8.0)
    assert policy.next_wait(0, 422) is None  # not worth the same request again
    assert policy.next_wait(0, 503, "3") == 3.0  # the server's word
    assert 0.5 <= (policy.next_wait(1, None) or 0) < 2.0  # no answer: back off
    assert policy.next_wait(2, 503) is None  # retries used up


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, max_retry_after_s=20.0)
    for retry, top in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(top / 2 <= d < top for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert policy.delay(1, "5") == 5.0  # the server's word wins
    assert policy.delay(1, "600") == 20.0  # within reason
    assert [s for s in (200, 400, 404, 408, 422, 429, 500, 502, 503) if policy.retryable(s)] \
        == [408, 429, 500, 502, 503]
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


async def test_retries_send_the_same_event_ids_and_honour_retry_after() -> None:
    def fail(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path == "/v1/events" and n <= 2:
            return error(503, "broker_unavailable", {"Retry-After": "0.2"})
        return None

    api = FakeApi(fail)
    async with client_for(api) as sr:
        ids = [await sr.track("view", user_id="u1", item_id=f"i{k}") for k in range(3)]
        started = time.monotonic()
        await sr.flush()
        waited = time.monotonic() - started
    bodies = api.bodies("/v1/events")
    assert len(bodies) == 3 and len(set(bodies)) == 1  # byte for byte the same request
    assert api.accepted == ids
    assert waited >= 0.4  # two waits of Retry-After: 0.2 (a floor, never a ceiling)
    assert sr.stats.retries == 2 and sr.stats.statuses["503"] == 2
    assert sr.stats.events_delivered == 3 and sr.stats.events_failed == 0


async def test_connection_errors_are_retried() -> None:
    def fail(request: httpx.Request, n: int) -> httpx.Response | None:
        if n == 1:
            raise httpx.ConnectError("refused", request=request)
        return None

    api = FakeApi(fail)
    async with client_for(api) as sr:
        await sr.track("view", anonymous_id="a1", item_id="x")
        await sr.flush()
        assert (await sr.popular(3)).source == "popular"
    assert len(api.accepted) == 1 and sr.stats.statuses["connection_error"] == 2


async def test_gives_up_after_the_bound_and_says_which_events() -> None:
    api = FakeApi(lambda r, n: error(503, "broker_unavailable", {"Retry-After": "0"}))
    reported: list[DeliveryError] = []
    sr = client_for(api, retry=RetryPolicy(max_retries=2, base_delay_s=0),
                    on_error=reported.append)
    ids = [await sr.track("view", user_id="u", item_id="x") for _ in range(2)]
    with pytest.raises(DeliveryError) as failed:
        await sr.flush()
    assert failed.value.event_ids == ids and reported[0].event_ids == ids
    (cause,) = failed.value.errors
    assert isinstance(cause, Unavailable) and cause.code == "broker_unavailable"
    assert len(api.requests) == 3  # one attempt and two retries
    await sr.flush()  # reported once
    with pytest.raises(ConnectionFailed):
        await AsyncClient("http://127.0.0.1:9", retry=RetryPolicy(max_retries=1,
                          base_delay_s=0)).popular()
    await sr.close()


async def test_4xx_raise_with_the_apis_code_and_are_not_retried() -> None:
    answers = {"/v1/popular": error(401, "unauthorized"), "/v1/trending": error(403, "forbidden"),
               "/v1/items/nope/similar": error(404, "not_found"),
               "/v1/users/u/recommendations": error(422, "validation_error",
                                                    detail=[{"loc": ["query", "n"]}])}
    api = FakeApi(lambda r, n: answers.get(r.url.path))
    async with client_for(api) as sr:
        with pytest.raises(Unauthorized) as e401:
            await sr.popular()
        assert (e401.value.status, e401.value.code) == (401, "unauthorized")
        assert e401.value.message == "unauthorized happened"
        with pytest.raises(Forbidden):
            await sr.trending()
        with pytest.raises(NotFound):
            await sr.similar("nope")
        with pytest.raises(ValidationFailed) as e422:
            await sr.recommendations("u", n=500)
        assert e422.value.detail == [{"loc": ["query", "n"]}]
    assert len(api.requests) == 4


async def test_invalid_events_are_refused_before_sending() -> None:
    api = FakeApi()
    async with client_for(api) as sr:
        with pytest.raises(InvalidPayload, match="item_id"):
            await sr.track("view", user_id="u1")
        with pytest.raises(InvalidPayload):
            await sr.track("teleport", user_id="u1", item_id="x")
        with pytest.raises(InvalidPayload):
            await sr.identify("", "u1")
        with pytest.raises(InvalidPayload):
            await sr.upsert_items([{"item_id": "x", "price": -1}])
    assert api.requests == []


async def test_null_ids_get_client_ids_and_a_string_of_item_ids_is_refused() -> None:
    """An event read from JSON with ``"event_id": null`` still gets the id retries keep
    (it used to be queued without one, then KeyError); ``item_ids="sku-1"`` is no list
    of four one-letter ids."""
    api = FakeApi()
    async with client_for(api) as sr:
        event_id = await sr.track_event({"type": "view", "user_id": "u", "item_id": "x",
                                         "event_id": None, "timestamp": None})
        with pytest.raises(InvalidPayload, match="list"):
            await sr.track("impression", user_id="u", item_ids="sku-1")
        assert sr.queued == 1
        await sr.flush()
    (sent,) = orjson.loads(api.bodies("/v1/events")[0])["events"]
    assert sent["event_id"] == event_id and api.accepted == [event_id]
    assert datetime.fromisoformat(sent["timestamp"]) <= datetime.now(UTC)


# -- batching --------------------------------------------------------------------------------
async def test_batches_on_size_and_on_flush() -> None:
    api = FakeApi()
    async with client_for(api, batch_size=10, flush_interval_s=60) as sr:
        for k in range(25):
            await sr.track("view", user_id="u", item_id=f"i{k}")
        await sr.flush()
    sizes = [len(orjson.loads(b)["events"]) for b in api.bodies("/v1/events")]
    assert sizes == [10, 10, 5]
    assert sr.stats.events_tracked == sr.stats.events_delivered == 25


async def test_batches_on_the_interval_without_flush() -> None:
    api = FakeApi()
    async with client_for(api, batch_size=100, flush_interval_s=0.05) as sr:
        await sr.track("view", user_id="u", item_id="x")
        await wait_for_async(lambda: api.accepted, 5, "the interval never sent the batch")


async def test_a_full_queue_makes_track_wait() -> None:
    api = FakeApi()
    api.gate = asyncio.Event()  # the API holds every delivery
    async with client_for(api, batch_size=2, max_queue=3, flush_interval_s=60) as sr:
        for k in range(5):  # one batch of 2 in flight, 3 queued
            await asyncio.wait_for(sr.track("view", user_id="u", item_id=f"i{k}"), 5)
        blocked = asyncio.ensure_future(sr.track("view", user_id="u", item_id="i5"))
        await asyncio.sleep(0.1)
        assert not blocked.done() and sr.queued == 3
        api.gate.set()
        await asyncio.wait_for(blocked, 5)
    assert len(api.accepted) == 6


async def test_too_large_halves_and_422_drops_only_the_named_events() -> None:
    def fail(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path != "/v1/events":
            return None
        events = orjson.loads(request.content)["events"]
        if len(events) > 3:
            return error(413, "payload_too_large")
        bad = [i for i, e in enumerate(events) if e["item_id"] == "bad"]
        if bad:
            return error(422, "validation_error", detail=[{"index": i} for i in bad])
        return None

    api = FakeApi(fail)
    async with client_for(api, batch_size=8) as sr:
        ids = [await sr.track("view", user_id="u", item_id="bad" if k == 5 else f"i{k}")
               for k in range(8)]
        with pytest.raises(DeliveryError) as failed:
            await sr.flush()
    assert failed.value.event_ids == [ids[5]]
    assert sorted(api.accepted) == sorted(ids[:5] + ids[6:])
    # the API's index is into a batch the caller never saw: each problem names its event
    (refused,) = failed.value.errors
    assert [d["event_id"] for d in refused.detail] == [ids[5]]


async def test_more_events_than_the_api_takes_per_request_are_split() -> None:
    # A deployment with STREAMREC_MAX_BATCH_EVENTS below the client's batch_size answered
    # every batch with a 422 naming no event, and the client dropped them all. The 422
    # is the API's own (api.ingest.parse_events at a limit of 3).
    from api.errors import ValidationFailed as ApiValidationFailed
    from api.ingest import parse_events

    def fail(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path != "/v1/events":
            return None
        try:
            parse_events(orjson.loads(request.content), max_events=3)
        except ApiValidationFailed as exc:
            return error(422, exc.code, detail=exc.detail)
        return None

    api = FakeApi(fail)
    async with client_for(api, batch_size=10) as sr:
        ids = [await sr.track("view", user_id="u", item_id=f"i{k}") for k in range(10)]
        await sr.flush()
    assert sorted(api.accepted) == sorted(ids)


async def test_identify_goes_after_the_events_tracked_before() -> None:
    api = FakeApi()
    async with client_for(api, flush_interval_s=60) as sr:
        await sr.track("view", anonymous_id="anon-1", item_id="x")
        await sr.identify("anon-1", "u1")
    assert [r.url.path for r in api.requests] == ["/v1/events", "/v1/identify"]
    assert orjson.loads(api.requests[1].content) == {"anonymous_id": "anon-1", "user_id": "u1"}


async def test_keys_query_and_catalog_writes() -> None:
    api = FakeApi()
    async with client_for(api) as sr:
        await sr.track("view", user_id="u", item_id="x")
        await sr.flush()
        listed = await sr.recommendations("u/1", n=3, context="product", item_id="x",
                                          exclude=["a", "b"], explain=True)
        assert isinstance(listed, RecommendationList) and listed.items[0].item_id == "a"
        await sr.upsert_items({"item_id": f"s{k}", "name": "n"} for k in range(2500))
        await sr.upsert_item("s 1", {"name": "n", "in_stock": False})
        await sr.delete_item("s1")
        assert (await sr.ready()).status == "not_ready"
    keys = {(r.method, r.url.path): r.headers.get("X-API-Key") for r in api.requests}
    assert keys[("POST", "/v1/events")] == "trk"
    read = api.requests[1]
    assert read.headers["X-API-Key"] == "rd"
    assert read.url.raw_path.startswith(b"/v1/users/u%2F1/recommendations")
    assert dict(read.url.params) == {"n": "3", "context": "product", "item_id": "x",
                                     "exclude": "a,b", "explain": "true"}
    chunks = [len(orjson.loads(b)["items"]) for b in api.bodies("/v1/items")]
    assert chunks == [1000, 1000, 500]
    assert keys[("PUT", "/v1/items/s 1")] == keys[("DELETE", "/v1/items/s1")] == "adm"
    assert "X-API-Key" not in api.requests[-1].headers  # /readyz needs none


async def test_admin_key_stands_in_and_closed_means_closed() -> None:
    api = FakeApi()
    sr = AsyncClient("http://api", admin_key="adm", transport=httpx.MockTransport(api))
    await sr.popular()
    await sr.close()
    assert api.requests[0].headers["X-API-Key"] == "adm"
    with pytest.raises(ClientClosed):
        await sr.track("view", user_id="u", item_id="x")
    with pytest.raises(ClientClosed):
        await sr.popular()
    with pytest.raises(ClientClosed):  # as the blocking client's flush after close
        await sr.flush()


# -- the blocking client ----------------------------------------------------------------------
def test_blocking_client_delivers_on_close() -> None:
    api = FakeApi(lambda r, n: error(503, "broker_unavailable", {"Retry-After": "0"})
                  if r.url.path == "/v1/events" and n == 1 else None)
    with Client("http://api", "trk", "rd", retry=FAST, flush_interval_s=60,
                transport=httpx.MockTransport(api)) as sr:
        event_id = sr.track("purchase", user_id="u1", item_id="x", quantity=2, price=9.5,
                            context={"page": "checkout"})
        assert sr.queued == 1
        assert sr.popular(5).items[0].item_id == "a"
        assert sr.identify("anon", "u1").accepted == 1  # delivers the purchase first
        sr.track_event({"type": "click", "user_id": "u1", "item_id": "y",
                        "recommendation_id": "home.popular.x"})
    assert api.accepted[0] == event_id and len(api.accepted) == 2
    sent = orjson.loads(api.bodies("/v1/events")[0])["events"][0]
    assert sent["quantity"] == 2 and sent["context"] == {"page": "checkout"}
    assert datetime.fromisoformat(sent["timestamp"]) <= datetime.now(UTC)
    with pytest.raises(ClientClosed):
        sr.popular()


def test_blocking_client_raises_delivery_errors_from_flush() -> None:
    api = FakeApi(lambda r, n: error(403, "forbidden") if r.url.path == "/v1/events" else None)
    sr = Client("http://api", "read-key-by-mistake", transport=httpx.MockTransport(api))
    event_id = sr.track("view", user_id="u", item_id="x")
    with pytest.raises(DeliveryError) as failed:
        sr.flush()
    assert failed.value.event_ids == [event_id]
    assert isinstance(failed.value.errors[0], Forbidden)
    sr.close()
    assert len(api.requests) == 1  # a 403 is not retried
