"""HTTP edges without Kafka or Redis: keys and roles, the error shape, the body cap,
``exclude`` parsing and the fallback snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Query, Request

from api.auth import KeyRing, Role
from api.body import BodyLimitMiddleware, read_json
from api.deps import parse_exclude
from api.errors import (
    ApiError,
    BrokerUnavailable,
    Forbidden,
    Unauthorized,
    ValidationFailed,
    install_handlers,
)
from api.server import event_loop_name
from api.snapshot import FallbackSnapshot
from core.settings import Settings
from schemas import RecommendationItem, RecommendationList


def test_keyring_roles() -> None:
    ring = KeyRing.from_settings(Settings(tracking_keys="t1, t2", read_keys="r1",
                                          admin_keys="adm"))
    assert ring.enabled
    ring.check("t2", Role.TRACKING)
    ring.check("r1", Role.READ)
    for role in Role:
        ring.check("adm", role)  # admin may do everything
    with pytest.raises(Unauthorized):
        ring.check(None, Role.READ)
    with pytest.raises(Unauthorized):
        ring.check("t", Role.TRACKING)  # a prefix is not a key
    with pytest.raises(Unauthorized):
        ring.check("\u00fc", Role.TRACKING)  # odd bytes are just wrong
    with pytest.raises(Forbidden):
        ring.check("t1", Role.READ)
    with pytest.raises(Forbidden):
        ring.check("r1", Role.ADMIN)


def test_keyring_off_without_keys(caplog: pytest.LogCaptureFixture) -> None:
    ring = KeyRing.from_settings(Settings())
    assert not ring.enabled
    ring.check(None, Role.ADMIN)
    ring.warn_if_open()
    assert "AUTH IS OFF" in caplog.text


def tiny_app(max_bytes: int = 1024) -> FastAPI:
    app = FastAPI(redirect_slashes=False)
    install_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {"got": await read_json(request)}

    @app.get("/n")
    async def n(n: int = Query(10, ge=1, le=100)) -> dict[str, int]:
        return {"n": n}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    @app.get("/busy")
    async def busy() -> None:
        raise BrokerUnavailable("later", retry_after_s=3)

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=tiny_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}
    return body


async def test_error_shapes(client: httpx.AsyncClient) -> None:
    # routing's bare "Not Found" / "Method Not Allowed" say which path and which methods
    assert error_of(await client.get("/missing"), 404)["error"] == {
        "code": "not_found",
        "message": "no endpoint at '/missing'; /openapi.json lists the API's paths"}
    assert error_of(await client.put("/n"), 405)["error"] == {
        "code": "method_not_allowed",
        "message": "PUT is not allowed here; this path accepts GET, HEAD"}
    long_path = error_of(await client.get("/" + "x" * 5000), 404)["error"]["message"]
    assert len(long_path) < 200
    body = error_of(await client.get("/n?n=0"), 422)
    assert body["detail"][0]["loc"] == ["query", "n"]
    assert body["detail"][0]["type"] == "greater_than_equal"
    body = error_of(await client.get("/boom"), 500)
    assert "secret" not in str(body)
    busy = await client.get("/busy")
    assert error_of(busy, 503)["error"]["code"] == "broker_unavailable"
    assert busy.headers["Retry-After"] == "3"


async def test_json_bodies(client: httpx.AsyncClient) -> None:
    assert (await client.post("/echo", json={"a": [1]})).json() == {"got": {"a": [1]}}
    body = error_of(await client.post("/echo", content=b"{"), 422)
    assert body["detail"][0]["type"] == "json_invalid"
    error_of(await client.post("/echo", content=b"  "), 422)
    error_of(await client.post("/echo", content=b"<a/>",
                               headers={"content-type": "application/xml"}), 415)
    error_of(await client.post("/echo", content=b"<a/>",
                               headers={"content-type": "application/json"}), 422)
    ok = await client.post("/echo", content=b"{}", headers={"content-type": "text/plain"})
    assert ok.status_code == 200
    ok = await client.post("/echo", content=b"[]",
                           headers={"content-type": "application/vnd.api+json"})
    assert ok.status_code == 200


async def test_body_cap(client: httpx.AsyncClient) -> None:
    assert (await client.post("/echo", content=b'"' + b"x" * 1022 + b'"')).status_code == 200
    body = error_of(await client.post("/echo", content=b'"' + b"x" * 1023 + b'"'), 413)
    assert body["error"]["code"] == "payload_too_large"

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"1" * 200

    error_of(await client.post("/echo", content=stream()), 413)


def test_parse_exclude() -> None:
    assert parse_exclude(None) == frozenset()
    assert parse_exclude(["a,b", "c", ",,"]) == {"a", "b", "c"}
    assert parse_exclude(["a, b"]) == {"a", " b", "b"}
    with pytest.raises(ValidationFailed):
        parse_exclude(["x" * 257])
    with pytest.raises(ValidationFailed):
        parse_exclude([",".join(str(i) for i in range(1001))])


async def test_snapshot_serves_the_last_good_copy() -> None:
    loads = 0

    async def load() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        if loads > 1:
            raise ConnectionError("redis gone")
        items = [RecommendationItem(item_id=i, score=s, reason="popular").model_dump()
                 for i, s in (("a", 3.0), ("b", 2.0), ("c", 1.0))]
        return RecommendationList(recommendation_id="x", source="popular", model_version="v1",
                                  items=items).model_dump()

    refreshes: list[int] = []
    snap = FallbackSnapshot(load, on_refresh=lambda: refreshes.append(snap.size))
    assert snap.serve(5)["items"] == []
    assert await snap.refresh()
    assert not await snap.refresh()  # failure keeps the copy
    assert refreshes == [3]  # told once the copy is in place, not on a failure
    served = RecommendationList.model_validate(snap.serve(2, blocked=frozenset({"a"}),
                                                          context="cart"))
    assert served.source == "fallback" and served.model_version == "v1"
    assert served.recommendation_id.startswith("cart.fallback.")
    assert [(i.item_id, i.reason) for i in served.items] == [("b", "fallback"), ("c", "fallback")]


def test_error_classes_and_loop() -> None:
    assert issubclass(BrokerUnavailable, ApiError) and BrokerUnavailable.status_code == 503
    assert event_loop_name() in ("uvloop", "asyncio")
