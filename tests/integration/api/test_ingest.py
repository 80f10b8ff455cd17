"""The write side of the HTTP API against a real Kafka-protocol broker: tracking events,
identify and catalog writes reach Kafka before the 202. Auth, errors and operations are in
``test_app.py``, recommendation reads in ``test_recommend.py``."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.kafka_tools import partition_of
from core.limits import links_ttl_s
from core.net import free_port
from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.integration.api.app_client import assert_error, envelopes, records, running

pytestmark = [pytest.mark.integration, pytest.mark.broker]


# -- tracking -------------------------------------------------------------------------------
async def test_events_are_on_kafka_when_202_returns(topics: Settings) -> None:
    batch = {"events": [
        {"type": "view", "user_id": "u1", "item_id": "a"},
        {"event_id": "client-1", "type": "purchase", "user_id": "u1", "item_id": "b",
         "quantity": 2, "price": 9.99, "timestamp": "2025-01-02T03:04:05Z",
         "context": {"page": "checkout", "channel": "web", "extra": 1}},
        {"type": "impression", "anonymous_id": "anon-1", "item_ids": ["a", "b", "c"]},
    ]}
    async with running(topics) as client:
        r = await client.post("/v1/events", json=batch)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["accepted"] == 3 and len(body["event_ids"]) == 3
        assert body["event_ids"][1] == "client-1"
        single = await client.post("/v1/events", json={"type": "click", "user_id": "u2",
                                                        "item_id": "x"})
        assert single.status_code == 202
    # Read right after the 202s: they were acknowledged, so they are on the log.
    found = await asyncio.to_thread(
        lambda: [(rec.partition, orjson.loads(rec.value))
                 for rec in records(topics, topics.topic_events)])
    by_key: dict[str, list[dict[str, Any]]] = {}
    for partition, env in found:
        assert env["v"] == 1
        for event in env["events"]:  # each event on its own entity's partition
            entity = event.get("user_id", event.get("anonymous_id"))
            assert partition_of(entity.encode(), topics.topic_partitions) == partition
            by_key.setdefault(entity, []).append(event)
    assert sorted(by_key) == ["anon-1", "u1", "u2"]
    first_request = {partition_of(k.encode(), topics.topic_partitions) for k in ("u1", "anon-1")}
    assert len(found) == len(first_request) + 1  # one message per partition and request
    assert [e["event_id"] for e in by_key["u1"]] == body["event_ids"][:2]
    purchase = by_key["u1"][1]
    assert purchase["ts"] == pytest.approx(1735787045.0)
    assert purchase["received_at"] > purchase["ts"]
    assert purchase["context"]["page"] == "checkout"
    assert by_key["anon-1"][0]["item_ids"] == ["a", "b", "c"]
    assert by_key["u2"][0]["event_id"] == single.json()["event_ids"][0]


async def test_largest_batch_of_one_shopper(topics: Settings) -> None:
    batch = {"events": [
        {"type": "impression", "user_id": "u1", "recommendation_id": "r" * 200,
         "item_ids": [f"item-{i}-{k}-" + "x" * 60 for k in range(10)]}
        for i in range(500)
    ]}
    body = orjson.dumps(batch)
    assert 500_000 < len(body) < topics.max_body_bytes
    async with running(topics) as client:
        r = await client.post("/v1/events", content=body)
        assert r.status_code == 202, r.text
        ids = r.json()["event_ids"]
    found = await asyncio.to_thread(envelopes, topics)
    assert len(found) > 1 and {key for key, _ in found} == {"u1"}  # split, one key
    assert [e["event_id"] for _, env in found for e in env["events"]] == ids


async def test_ids_of_256_characters_in_any_script_are_accepted(topics: Settings) -> None:
    # API.md: ids of at most 256 characters; 256 "é" are 512 bytes of UTF-8, "😀" 1,024.
    events = [{"type": "view", "user_id": wide * 256, "item_id": wide * 256}
              for wide in ("é", "日", "😀")]
    async with running(topics) as client:
        r = await client.post("/v1/events", json={"events": events})
        assert r.status_code == 202, r.text
        r = await client.post("/v1/events", json={"type": "view", "user_id": "é" * 257,
                                                  "item_id": "a"})
        body = assert_error(r, 422, "validation_error")
        assert body["detail"][0]["loc"] == ["user_id"]
        assert "256 characters" in body["detail"][0]["msg"]


async def test_invalid_batch_is_rejected_whole(topics: Settings) -> None:
    batch = {"events": [
        {"type": "view", "user_id": "u1", "item_id": "a"},
        {"type": "view", "user_id": "u1"},
        {"type": "view", "user_id": "u1", "item_id": "a", "timestamp": "yesterday"},
        {"type": "teleport", "user_id": "u1", "item_id": "a"},
        {"type": "view", "item_id": "a"},
        {"type": "view", "user_id": "u1", "item_id": "x" * 257},
        {"type": "view", "user_id": "u1", "item_id": "a", "timestamp": "2999-01-01T00:00:00Z"},
        "not an object",
    ]}
    async with running(topics) as client:
        r = await client.post("/v1/events", json=batch)
        body = assert_error(r, 422, "validation_error")
        by_index: dict[int, list[dict[str, Any]]] = {}
        for entry in body["detail"]:
            assert {"index", "loc", "msg", "type"} <= set(entry)
            by_index.setdefault(entry["index"], []).append(entry)
        assert sorted(by_index) == [1, 2, 3, 4, 5, 6, 7]
        assert by_index[2][0]["loc"] == ["timestamp"]
        assert by_index[3][0]["loc"] == ["type"]
        assert by_index[5][0]["loc"] == ["item_id"]
        # Rules across fields name the missing field too (per event, per field).
        assert by_index[1][0]["loc"] == ["item_id"] and "item_id" in by_index[1][0]["msg"]
        assert by_index[4][0]["loc"] == ["user_id"]
        assert "anonymous_id" in by_index[4][0]["msg"]
        # The message says what is wrong, not only how many events are invalid.
        assert body["error"]["message"] == (
            "7 of 8 events invalid; none were accepted: event 1, item_id: "
            f"{by_index[1][0]['msg']} (and {len(body['detail']) - 1} more)")
        r = await client.post("/v1/events", json={"type": "view", "user_id": "u1",
                                                  "item_id": "a", "quantity": 0})
        message = assert_error(r, 422, "validation_error")["error"]["message"]
        assert message.startswith("1 of 1 events invalid; none were accepted: event 0, quantity")
        assert "greater than or equal to 1" in message
    assert await asyncio.to_thread(envelopes, topics) == []


async def test_malformed_bodies_get_clear_4xx(topics: Settings) -> None:
    event = {"type": "view", "user_id": "u1", "item_id": "a"}
    async with running(topics) as client:
        assert_error(await client.post("/v1/events", json={"events": []}), 422)
        r = await client.post("/v1/events", json={"events": [event] * 501})
        assert assert_error(r, 422)["detail"][0]["type"] == "too_long"
        assert_error(await client.post("/v1/events", json={"events": {"a": 1}}), 422)
        assert_error(await client.post("/v1/events", json=[event]), 422)
        assert_error(await client.post("/v1/events", json="view"), 422)
        assert_error(await client.post("/v1/events", content=b"{not json"), 422)
        assert_error(await client.post("/v1/events", content=b""), 422)
        assert_error(await client.post("/v1/events", content=b'{"a": NaN}'), 422)
        # the message says why the JSON does not parse, not only that it does not
        r = await client.post("/v1/events", content=b"\xef\xbb\xbf" + orjson.dumps(event))
        assert "byte order mark" in assert_error(r, 422)["error"]["message"]
        assert_error(await client.post("/v1/events", content=b"\xff\xfe"), 422)
        # a body in another charset: a 415 naming it, or a 422 saying "not UTF-8" (orjson
        # said "str is not valid UTF-8: surrogates not allowed" to Latin-1 and UTF-16)
        text = '{"type":"view","user_id":"Zoë","item_id":"a"}'
        for charset in ("iso-8859-1", "UTF-16"):
            r = await client.post("/v1/events", content=text.encode(charset), headers={
                "content-type": f"application/json; charset={charset}"})
            message = assert_error(r, 415, "unsupported_media_type")["error"]["message"]
            assert charset.lower() in message, message
        r = await client.post("/v1/events", content=text.encode("latin-1"))
        assert "not UTF-8" in assert_error(r, 422)["error"]["message"]
        r = await client.post("/v1/events", content=text.encode(), headers={
            "content-type": 'application/json; charset="UTF-8"'})
        assert r.status_code == 202, r.text
        r = await client.post("/v1/events", content=orjson.dumps(event), headers={
            "content-type": "application/json; charset=iso-8859-1"})  # ASCII: same bytes
        assert r.status_code == 202, r.text
        r = await client.post("/v1/events", data={"type": "view"})  # form-encoded
        assert_error(r, 415, "unsupported_media_type")
        r = await client.post("/v1/events", content=b"<event/>",
                              headers={"content-type": "application/xml"})
        assert_error(r, 415)
        r = await client.post("/v1/events", content=orjson.dumps(event),
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 202  # curl -d without -H: still JSON
        r = await client.post("/v1/events", content=orjson.dumps(event),
                              headers={"content-type": "text/plain;charset=UTF-8"})
        assert r.status_code == 202  # navigator.sendBeacon
        r = await client.post("/v1/events", json={**event, "quantity": 0, "price": -1})
        assert {e["loc"][0] for e in assert_error(r, 422)["detail"]} == {"quantity", "price"}
        r = await client.post("/v1/events", json={**event, "timestamp": 1e30})
        assert_error(r, 422)
        for ts in ("1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", 0):
            r = await client.post("/v1/events", json={**event, "timestamp": ts})
            entry = assert_error(r, 422)["detail"][0]
            assert entry["loc"] == ["timestamp"] and "after 1970" in entry["msg"], entry
        r = await client.post("/v1/events", json={**event, "user_id": 42})
        assert_error(r, 422)
    assert len(await asyncio.to_thread(envelopes, topics)) == 4


async def test_compressed_bodies_are_a_415_naming_the_coding(topics: Settings) -> None:
    # A gzip body was read as JSON text: a 422 "not valid JSON ... str is not valid UTF-8"
    # that did not say what was wrong. Bodies are read uncompressed only (RFC 7694).
    event = orjson.dumps({"type": "view", "user_id": "u1", "item_id": "a"})
    async with running(topics) as client:
        for path, body in (("/v1/events", event),
                           ("/v1/identify", b'{"anonymous_id":"a1","user_id":"u1"}'),
                           ("/v1/items", b'{"items":[{"item_id":"i1"}]}')):
            for coding in ("gzip", "br", "deflate, gzip"):
                r = await client.post(path, content=gzip.compress(body), headers={
                    "content-type": "application/json", "content-encoding": coding})
                message = assert_error(r, 415, "unsupported_media_type")["error"]["message"]
                assert coding in message and "uncompressed" in message, (path, message)
                assert r.headers["accept-encoding"] == "identity"
        r = await client.post("/v1/events", content=event, headers={
            "content-type": "application/json", "content-encoding": "Identity"})
        assert r.status_code == 202, r.text
    assert len(await asyncio.to_thread(envelopes, topics)) == 1


async def test_deeply_nested_bodies_are_a_422_on_every_json_route(topics: Settings) -> None:
    # 300..1000 levels parse (orjson's limit is 1024) but broke a recursive depth count
    # (RecursionError) or orjson.dumps' 254-level limit in the Idempotency-Key
    # fingerprint of an ignored extra field: a 500 that also reset the connection.
    # Beyond orjson's limit (2,000, 10,000 levels) the answer said "not valid JSON".
    event = b'{"type":"view","anonymous_id":"a","item_id":"s",'
    posts = []
    for depth in (33, 300, 1000, 2000, 10_000):
        nest = b"[" * depth + b"]" * depth
        posts += [
            ("/v1/events", event + b'"context":{"a":' + nest + b"}}", {}),
            ("/v1/events", event + b'"junk":' + nest + b"}", {"Idempotency-Key": f"d{depth}"}),
            ("/v1/events", b'{"events":[' + event[:-1] + b'}],"junk":' + nest + b"}", {}),
            ("/v1/identify", b'{"anonymous_id":"a","user_id":"u","junk":' + nest + b"}", {}),
            ("/v1/items", b'{"items":[{"item_id":"i","properties":{"p":' + nest + b"}}]}", {}),
        ]
    async with running(topics) as client:
        for path, body, headers in posts:
            r = await client.post(path, content=body,
                                  headers={"content-type": "application/json", **headers})
            answer = assert_error(r, 422)
            assert answer["detail"][0]["type"] == "too_deep", (path, len(body))
            assert "nested more than 32 levels deep" in answer["error"]["message"]
        r = await client.post("/v1/events", content=event + b'"junk":' + b"[" * 30 + b"]" * 30
                              + b"}", headers={"Idempotency-Key": "shallow"})
        assert r.status_code == 202, r.text


async def test_body_size_cap(topics: Settings) -> None:
    small = topics.model_copy(update={"max_body_bytes": 2048})
    big = {"events": [{"type": "view", "user_id": "u1", "item_id": f"item-{i}"}
                      for i in range(100)]}
    async with running(small) as client:
        r = await client.post("/v1/events", json=big)
        assert_error(r, 413, "payload_too_large")
        payload = orjson.dumps(big)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for start in range(0, len(payload), 500):
                yield payload[start:start + 500]

        assert_error(await client.post("/v1/events", content=chunks()), 413)
        r = await client.put("/v1/items/a", content=b'{"name": "' + b"x" * 4096 + b'"}',
                             headers={"content-type": "application/json"})
        assert_error(r, 413)
        r = await client.post("/v1/events", json={"type": "view", "user_id": "u", "item_id": "a"})
        assert r.status_code == 202


async def test_identify(topics: Settings) -> None:
    async with running(topics) as client:
        ok = await client.post("/v1/identify", json={"anonymous_id": "anon-9", "user_id": "u9"})
        assert ok.status_code == 202, ok.text
        assert ok.json()["accepted"] == 1
        assert_error(await client.post("/v1/identify", json={"anonymous_id": "anon-9"}), 422)
        r = await client.post("/v1/identify", json={"anonymous_id": "a", "user_id": "u",
                                                    "timestamp": "1960-01-01T00:00:00Z"})
        assert_error(r, 422)
        assert_error(await client.post("/v1/identify", json={"anonymous_id": "", "user_id": "u"}),
                     422)
        same = await client.post("/v1/identify", json={"anonymous_id": "u", "user_id": "u"})
        assert_error(same, 422)
        assert "must differ" in same.json()["error"]["message"]
    found = await asyncio.to_thread(envelopes, topics)
    assert len(found) == 1
    key, env = found[0]
    assert key == "anon-9"
    (event,) = env["events"]
    assert event["type"] == "identify" and event["user_id"] == "u9"
    assert event["anonymous_id"] == "anon-9" and event["ts"] > 0
    assert event["event_id"] == ok.json()["ids"][0]


async def test_a_forget_right_after_identify_forgets_the_anonymous_id(topics: Settings) -> None:
    """No worker runs here: from the identify's 202 on, DELETE /v1/users/{id} knows the
    link (before, only once the worker had applied the identify, so a forget sent at once
    left the anonymous id's history in place)."""
    async with running(topics) as client:
        for user in ("u7", "u8"):
            ok = await client.post("/v1/identify", json={"anonymous_id": "anon-7",
                                                         "user_id": user})
            assert ok.status_code == 202, ok.text
        gone = await client.delete("/v1/users/u7")
        assert gone.status_code == 202, gone.text
        assert gone.json()["ids"] == ["u7", "anon-7"]
        assert (await client.delete("/v1/users/u9")).json()["ids"] == ["u9"]


async def test_an_identify_link_outlives_the_anonymous_state(topics: Settings) -> None:
    """The user's set of anonymous ids must last as long as the state it points to (the
    anonymous id's history and keys, ``anonymous_ttl_s`` after its last event), or a
    DELETE of the user forgot the user alone and the anonymous id's history was served
    again on its next visit; it had no expiry at all, one key per user id ever named in
    an identify. It lives ``links_ttl_s`` after its last write, whatever lifetime it
    had."""
    anons = RedisKeys().user_anons("u10")
    client_redis = sync_client(topics)
    try:
        client_redis.sadd(anons, "anon-old")
        client_redis.expire(anons, 60)
        async with running(topics) as client:
            ok = await client.post("/v1/identify", json={"anonymous_id": "anon-10",
                                                         "user_id": "u10"})
            assert ok.status_code == 202, ok.text
        lifetime = links_ttl_s(topics.entity_ttl_s, topics.anonymous_ttl_s)
        assert lifetime - 5 < client_redis.ttl(anons) <= lifetime
        assert client_redis.smembers(anons) == {b"anon-old", b"anon-10"}
    finally:
        client_redis.close()


async def test_a_forget_naming_an_id_with_a_newline_forgets_no_other_id(topics: Settings
                                                                        ) -> None:
    """A newline is a control character: the id is refused (422 with the JSON error
    body), at the end of the path too, where the route once matched ``u1`` and forgot it
    (and a catalog write wrote item ``a``)."""
    async with running(topics) as client:
        for path in ("/v1/users/u1%0A", "/v1/users/u%0A1", "/v1/users/u1%0D%0A"):
            body = assert_error(await client.delete(path), 422, "validation_error")
            assert body["detail"][0]["loc"] == ["path", "user_id"], path
        assert_error(await client.put("/v1/items/a%0A", json={}), 422, "validation_error")
        # ...while a recommendation read serves the id like any unknown one
        r = await client.get("/v1/users/u%0A1/recommendations?n=%2B3")
        assert r.status_code == 200 and r.json()["source"] in ("popular", "fallback")
    assert not [key for key, env in envelopes(topics) if key.startswith("u1")
                or any(ev.get("type") == "forget" for ev in env["events"])]


async def test_broker_down_gives_503_with_retry_after(settings: Settings) -> None:
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}",
                                       "produce_timeout_s": 0.5})
    async with running(down, wait_ready=False) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "checks": {"kafka": False, "redis": True},
                                "error": {"code": "not_ready", "message": "Kafka unreachable"}}
        assert_error(ready, 503, "not_ready")
        r = await client.post("/v1/events", json={"type": "view", "user_id": "u", "item_id": "a"})
        assert_error(r, 503, "broker_unavailable")
        assert int(r.headers["Retry-After"]) >= 1
        assert_error(await client.put("/v1/items/a", json={"name": "A"}), 503)
        # reads still work without Kafka
        assert (await client.get("/v1/popular")).status_code == 200


# -- catalog ----------------------------------------------------------------------------------
async def test_catalog_writes(topics: Settings) -> None:
    limited = topics.model_copy(update={"max_batch_items": 2})
    async with running(limited) as client:
        r = await client.put("/v1/items/sku-1", json={"name": "Beans", "price": 24.9,
                                                      "currency": "EUR", "in_stock": False})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 1, "ids": ["sku-1"]}
        r = await client.post("/v1/items", json={"items": [{"item_id": "sku-2", "name": "Mug"},
                                                           {"item_id": "sku-3"}]})
        assert r.status_code == 202 and r.json()["accepted"] == 2
        assert (await client.delete("/v1/items/sku-2")).status_code == 202
        items3 = {"items": [{"item_id": f"s{i}"} for i in range(3)]}
        assert_error(await client.post("/v1/items", json=items3), 422)
        assert_error(await client.post("/v1/items", json={"items": []}), 422)
        assert_error(await client.put("/v1/items/" + "x" * 257, json={}), 422)
        assert_error(await client.put("/v1/items/sku-1", json={"price": "cheap"}), 422)
        assert_error(await client.put("/v1/items/sku-1", json={"currency": "EURO"}), 422)
        # a JSON boolean is no price (pydantic alone read true as 1.0)
        r = await client.put("/v1/items/sku-1", json={"price": True})
        assert "not a boolean" in assert_error(r, 422)["detail"][0]["msg"]
        assert_error(await client.put("/v1/items/sku-1", content=b"[1,"), 422)
        # catalog fields are bounded (core.limits): ~1 MB of properties was a 202
        r = await client.put("/v1/items/sku-9", json={"properties": {"blob": "x" * 20_000}})
        assert assert_error(r, 422)["detail"][0]["loc"] == ["body", "properties"]
        r = await client.post("/v1/items", json={"items": [
            {"item_id": "sku-8"}, {"item_id": "sku-9", "name": "Beans\x00"}]})
        assert assert_error(r, 422)["detail"][0]["loc"] == ["body", "items", 1, "name"]
        # an empty id is the route's 422 naming it (API.md: ids are non-empty)
        r = await client.delete("/v1/items/")
        assert assert_error(r, 422)["detail"][0]["loc"] == ["path", "item_id"]
    got = await asyncio.to_thread(records, topics, topics.topic_catalog)
    by_key = {}
    for rec in got:
        by_key.setdefault(rec.key.decode(), []).append(orjson.loads(rec.value))
    assert sorted(by_key) == ["sku-1", "sku-2", "sku-3"]
    assert by_key["sku-1"][0]["in_stock"] is False and by_key["sku-1"][0]["price"] == 24.9
    assert [rec["deleted"] for rec in by_key["sku-2"]] == [False, True]
    assert by_key["sku-2"][1]["in_stock"] is False
