"""The recommendation fast path (api/fastpath.py) and the FastAPI routes answer alike:
same status, headers that matter and body (all but the random part of the list id)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import redis

from api.app import create_app
from core.redis_keys import RedisKeys
from core.settings import Settings

pytestmark = pytest.mark.integration

K = RedisKeys()
READ, TRACK = "read-k-0123456789ab", "track-k-0123456789a"

URLS = [
    "/v1/popular", "/v1/popular?n=3&exclude=p1", "/v1/popular?n=3&n=5", "/v1/trending?n=2",
    "/v1/users/u1/recommendations", "/v1/users/u1/recommendations?n=2&exclude=a,%20b",
    "/v1/users/u1/recommendations?context=product&item_id=a",
    "/v1/users/u1/recommendations?context=cart", "/v1/users/u1/recommendations?context=x",
    "/v1/users/u%20%C3%A9/recommendations", "/v1/items/a/similar?user_id=u1&n=4",
    # everything below is answered by the routes (errors): same answer either way
    "/v1/users/u%2F1/recommendations",
    "/v1/popular?n=0", "/v1/popular?n=101", "/v1/popular?n=abc", "/v1/popular?n=+5",
    "/v1/users/u1/recommendations?item_id=", "/v1/users/" + "u" * 257 + "/recommendations",
    "/v1/popular?exclude=" + "x" * 257, "/v1/items//similar", "/v1/popular/",
    "/v1/users/u1/recommendations?context=" + "c" * 65,
]


def _strip(resp: httpx.Response) -> tuple[int, Any, str | None, str | None]:
    body: Any = resp.json() if resp.content else None
    if isinstance(body, dict) and "recommendation_id" in body:
        body = {**body, "recommendation_id": body["recommendation_id"].rsplit(".", 1)[0]}
    return (resp.status_code, body, resp.headers.get("content-type"),
            resp.headers.get("retry-after"))


async def test_fast_path_answers_like_the_routes(settings: Settings) -> None:
    r = redis.Redis.from_url(settings.redis_url)
    r.zadd(K.popular, {"p1": 5, "p2": 4, "p3": 3, "a": 2, "b": 1})
    r.zadd(K.trending, {"p2": 5, "p3": 1})
    r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["a", 1], ["b", 0.5],
                                                                  ["c", 0.2]]}))
    r.set(K.item_similar("a"), orjson.dumps({"v": "v1", "items": [["c", 1], ["b", 0.5]]}))
    r.hset(K.item_meta("c"), mapping={"name": "C", "price": "2.5", "in_stock": "1"})
    r.close()
    answers: dict[bool, list[Any]] = {}
    for fast in (True, False):
        s = settings.model_copy(update={"api_fast_path": fast, "read_keys": READ,
                                        "tracking_keys": TRACK})
        app = create_app(s)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                got = [_strip(await c.get(u, headers={"X-API-Key": READ})) for u in URLS]
                got.append(_strip(await c.get("/v1/popular")))  # 401
                got.append(_strip(await c.get("/v1/popular", headers={"X-API-Key": "no"})))
                got.append(_strip(await c.get("/v1/popular", headers={"X-API-Key": TRACK})))
                metrics = (await c.get("/metrics")).text
                assert 'route="/v1/users/{user_id}/recommendations"' in metrics
        answers[fast] = got
    for url, fast, slow in zip([*URLS, "401", "401 wrong", "403"], answers[True],
                               answers[False], strict=True):
        assert fast == slow, url
    statuses = [a[0] for a in answers[True]]
    assert statuses[:11] == [200] * 11 and all(s < 500 for s in statuses)


async def test_fast_path_leaves_browser_requests_to_cors(settings: Settings) -> None:
    """With CORS configured, requests carrying ``Origin`` get the CORS middleware's
    headers either way; the fast path still counts what it answers in the metrics."""
    r = redis.Redis.from_url(settings.redis_url)
    r.zadd(K.popular, {"p1": 5, "p2": 4})
    r.close()
    seen: dict[bool, list[tuple[str | None, str | None]]] = {}
    for fast in (True, False):
        s = settings.model_copy(update={"api_fast_path": fast, "read_keys": READ,
                                        "cors_origins": "https://shop.example"})
        app = create_app(s)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                got = []
                for origin in ("https://shop.example", "https://evil.example", None):
                    headers = {"X-API-Key": READ, **({"Origin": origin} if origin else {})}
                    resp = await c.get("/v1/popular?n=1", headers=headers)
                    assert resp.status_code == 200
                    got.append((resp.headers.get("access-control-allow-origin"),
                                resp.headers.get("vary")))
                metrics = (await c.get("/metrics")).text
                assert ('streamrec_api_requests_total{method="GET",route="/v1/popular",'
                        'status="200"} 3.0') in metrics
                assert "streamrec_api_requests_in_flight 1.0" in metrics  # /metrics itself
        seen[fast] = got
    assert seen[True] == seen[False]
    assert seen[True][0][0] == "https://shop.example"
