"""The HTTP API as a service, against a real Kafka-protocol broker and a real Redis: key
roles, error shapes, readiness, metrics, OpenAPI, CORS and real sockets. Writes are in
``test_ingest.py``, recommendation reads in ``test_recommend.py``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from core.net import free_port
from core.settings import Settings
from tests.integration.api.app_client import assert_error, envelopes, running
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]

TRACK, READ, ADMIN = "trk-key-1-0123456", "read-key-1-0123456", "admin-key-1-0123456"
TRACK2 = "trk-2-0123456789ab"


# -- auth -------------------------------------------------------------------------------------
async def test_roles(topics: Settings) -> None:
    keyed = topics.model_copy(update={"tracking_keys": f"{TRACK},{TRACK2}", "read_keys": READ,
                                      "admin_keys": ADMIN})
    event = {"type": "view", "user_id": "u1", "item_id": "a"}
    async with running(keyed) as client:
        assert_error(await client.post("/v1/events", json=event), 401, "unauthorized")
        r = await client.post("/v1/events", json=event, headers={"X-API-Key": "nope"})
        assert_error(r, 401)
        r = await client.post("/v1/events", json=event, headers={"X-API-Key": "ünïcode".encode()})
        assert_error(r, 401)
        r = await client.post("/v1/events", json=event, headers={"X-API-Key": READ})
        assert_error(r, 403, "forbidden")
        for key in (TRACK, TRACK2, ADMIN):
            r = await client.post("/v1/events", json=event, headers={"X-API-Key": key})
            assert r.status_code == 202, (key, r.text)
        assert_error(await client.get("/v1/popular"), 401)
        assert_error(await client.get("/v1/popular", headers={"X-API-Key": TRACK}), 403)
        for key in (READ, ADMIN):
            assert (await client.get("/v1/popular", headers={"X-API-Key": key})).status_code == 200
        r = await client.put("/v1/items/a", json={}, headers={"X-API-Key": READ})
        assert_error(r, 403)
        r = await client.delete("/v1/items/a", headers={"X-API-Key": TRACK})
        assert_error(r, 403)
        r = await client.put("/v1/items/a", json={}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 202
        # auth is checked before the body is looked at
        r = await client.post("/v1/events", content=b"garbage")
        assert_error(r, 401)
        assert (await client.get("/healthz")).status_code == 200
        for path in ("/healthz", "/readyz"):  # load balancers' checks often send HEAD
            head = await client.head(path)
            assert head.status_code == 200 and head.content == b"", path
        # The bare address names the service and where to go, with auth on and no key
        # (it was a 404 an operator opening the API in a browser could not read).
        root = await client.get("/")
        assert root.status_code == 200, root.text
        index = root.json()
        assert index["service"] == "streamrec" and index["version"]
        for link in index["links"].values():
            assert (await client.get(link)).status_code in (200, 401), link


async def test_auth_off_is_logged_loudly(
    topics: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streamrec.api"):
        async with running(topics) as client:
            r = await client.post("/v1/events", json={"type": "view", "user_id": "u",
                                                      "item_id": "a"})
            assert r.status_code == 202
    assert any("AUTH IS OFF" in rec.getMessage() for rec in caplog.records)


# -- errors, operations -------------------------------------------------------------------------
async def test_error_shapes_and_odd_requests(topics: Settings) -> None:
    async with running(topics) as client:
        assert_error(await client.get("/nope"), 404, "not_found")
        assert_error(await client.delete("/v1/popular"), 405, "method_not_allowed")
        assert_error(await client.get("/v1/events"), 405)
        for n in ("0", "101", "-1", "abc", "1e3", str(10**30), ""):
            body = assert_error(await client.get(f"/v1/popular?n={n}"), 422, "validation_error")
            assert body["detail"][0]["loc"] == ["query", "n"]
        for path in ("/v1/users/%20/recommendations", "/v1/users/%F0%9F%98%80/recommendations",
                     "/v1/users/a%2Fb/recommendations", "/v1/items/..%2F..%2Fetc/similar",
                     "/v1/users/{x}/recommendations?context=product&item_id=*",
                     "/v1/items/%00/similar?user_id=%00"):
            assert (await client.get(path)).status_code in (200, 404), path
        r = await client.get("/v1/users/" + "u" * 257 + "/recommendations")
        assert_error(r, 422)
        # API.md counts characters: 256 of any script is an id, 257 is not.
        for wide in ("é", "日", "😀"):
            assert (await client.get(f"/v1/users/{wide * 256}/recommendations")).status_code == 200
            assert (await client.get(f"/v1/items/{wide * 256}/similar")).status_code in (200, 404)
            assert_error(await client.get(f"/v1/users/{wide * 257}/recommendations"), 422)
        r = await client.get("/v1/users/u/recommendations?exclude=" + "x" * 257)
        assert_error(r, 422)
        r = await client.get("/v1/users/u/recommendations?item_id=")
        assert_error(r, 422)
        # An empty id is a 422 naming the parameter on both path shapes; it was a 405
        # "Method Not Allowed" (Allow: DELETE / PUT, DELETE): "/similar" or "/recommendations"
        # was taken as the id of DELETE /v1/users/{id} or PUT/DELETE /v1/items/{id}.
        for path, param in (("/v1/users//recommendations", "user_id"),
                            ("/v1/users//recommendations?n=5&context=cart", "user_id"),
                            ("/v1/items//similar", "item_id"),
                            ("/v1/items//similar?user_id=u1", "item_id")):
            body = assert_error(await client.get(path), 422, "validation_error")
            assert body["detail"][0]["loc"] == ["path", param], path
            assert param in body["error"]["message"], path


async def test_ready_metrics_openapi(topics: Settings) -> None:
    async with running(topics) as client:
        r = await client.get("/readyz")
        assert r.json() == {"status": "ready", "checks": {"kafka": True, "redis": True}}
        await client.post("/v1/events", json={"type": "view", "user_id": "u", "item_id": "a"})
        await client.get("/v1/popular")
        text = (await client.get("/metrics")).text
        assert "streamrec_api_events_accepted_total 1.0" in text
        assert 'route="/v1/events"' in text and 'route="/v1/popular"' in text
        assert "streamrec_api_request_duration_seconds_bucket" in text
        doc = (await client.get("/openapi.json")).json()
        schemas = doc["components"]["schemas"]
        for name in ("TrackingEvent", "EventBatch", "IdentifyRequest", "ItemBatch",
                     "RecommendationList", "ErrorBody"):
            assert name in schemas
        post = doc["paths"]["/v1/events"]["post"]
        assert post["summary"] and post["description"]
        assert "requestBody" in post and "503" in post["responses"]


async def test_cors(topics: Settings, tmp_path: Path) -> None:
    cors = topics.model_copy(update={"cors_origins": "https://shop.example"})
    async with running(cors) as client:
        r = await client.options("/v1/events", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        r = await client.get("/v1/popular", headers={"Origin": "https://shop.example"})
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        # A refused preflight is an error in the one JSON shape (it was plain text).
        for headers in ({"Origin": "https://evil.example"},
                        {"Origin": "https://shop.example",
                         "Access-Control-Request-Headers": "x-api-key,x-other"}):
            r = await client.options("/v1/popular", headers={
                "Access-Control-Request-Method": "GET", **headers})
            message = assert_error(r, 400, "bad_request")["error"]["message"]
            assert message.startswith("Disallowed CORS"), message
            assert r.headers["content-type"] == "application/json"


def test_over_real_http(topics: Settings) -> None:
    """Through uvicorn and real sockets: Content-Length cap, ack, error shape."""
    port = free_port()
    app = create_app(topics.model_copy(update={"max_body_bytes": 2048}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio",
                                           access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            def ready() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 15, "server ready")
            event = {"type": "view", "user_id": "u1", "item_id": "a"}
            assert client.post("/v1/events", json=event).status_code == 202
            r = client.post("/v1/events", content=b"x" * 5000,
                            headers={"content-type": "application/json"})
            assert_error(r, 413, "payload_too_large")
            assert_error(client.get("/v1/nothing"), 404, "not_found")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert len(envelopes(topics)) == 1


@pytest.mark.parametrize("fast", [True, False])
async def test_a_url_that_is_not_utf8_is_a_422_not_another_id(topics: Settings,
                                                             fast: bool) -> None:
    # Found from outside: /v1/items/a%FFb and /v1/items/a%FEb both named the id
    # "a\ufffdb" (the server decodes escapes with replacement characters): two ids a
    # client told apart were stored, served and forgotten as one.
    settings = topics.model_copy(update={"api_fast_path": fast})
    async with running(settings, wait_ready=False) as client:
        for method, url, part in [
                ("PUT", "/v1/items/a%FFb", "path"),
                ("GET", "/v1/users/a%FEb/recommendations", "path"),
                ("GET", "/v1/items/sku-1/similar?user_id=%C3", "query"),
                ("GET", "/v1/popular?exclude=%FF", "query"),
                ("DELETE", "/v1/users/%E9t%E9", "path")]:
            resp = await client.request(method, url, json={"name": "x"} if method == "PUT"
                                        else None)
            body = assert_error(resp, 422, "validation_error")
            assert body["detail"][0]["loc"] == [part], (url, body)
        # escapes of UTF-8 (and of "/") are ids as before
        for url in ("/v1/users/%C3%A9t%C3%A9/recommendations", "/v1/items/a%2Fb/similar",
                    "/v1/popular?exclude=%C3%A9"):
            assert (await client.get(url)).status_code == 200, url
