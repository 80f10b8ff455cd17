"""The API's request series have bounded labels, against a real broker and Redis: a
client sending random paths, methods, ids, bodies and headers adds no label value (the
route label is a route template or ``unmatched``; a method the API never answers is
``other``), and a request a middleware answers before routing (413, a refused
preflight, ``/metrics`` without its key, a URL that is not UTF-8) is still counted
under its route."""

from __future__ import annotations

import random
import string

from prometheus_client.parser import text_string_to_metric_families

from api.metrics import METHODS
from core.settings import Settings
from tests.integration.api.app_client import running

TRACK, READ, ADMIN = "trk-key-1-0123456", "read-key-1-0123456", "admin-key-1-0123456"
ORIGIN = "https://shop.example"


def _requests(text: str) -> dict[tuple[str, str, str], float]:
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "streamrec_api_requests" for s in family.samples
            if s.name == "streamrec_api_requests_total"}


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The series, but for their ``status`` (which a made-up id may turn from 404 to 422:
    a bounded set of codes)."""
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "status")))
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


async def test_refused_before_routing_counts_under_its_route(topics: Settings) -> None:
    s = topics.model_copy(update={"tracking_keys": TRACK, "read_keys": READ,
                                  "admin_keys": ADMIN, "ops_require_key": True,
                                  "cors_origins": ORIGIN, "max_body_bytes": 2048})
    async with running(s) as client:
        too_big = {"events": [{"type": "view", "user_id": "u", "item_id": "i"}] * 100}
        r = await client.post("/v1/events", json=too_big, headers={"X-API-Key": TRACK})
        assert r.status_code == 413
        r = await client.options("/v1/events", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 400
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/v1/popular/%ff")).status_code in (404, 422)
        assert (await client.request("PROPFIND", "/v1/popular")).status_code == 405
        counted = _requests((await client.get("/metrics", headers={"X-API-Key": ADMIN})).text)
    assert counted[("POST", "/v1/events", "413")] == 1
    assert counted[("OPTIONS", "/v1/events", "400")] == 1
    assert counted[("GET", "/metrics", "401")] == 1
    assert counted[("other", "/v1/popular", "405")] == 1
    assert {route for _, route, _ in counted} <= {
        "/v1/events", "/metrics", "/v1/popular", "/readyz", "unmatched"}


_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PROPFIND", "MKCOL")
_KEYS = (TRACK, READ, ADMIN, None)


def _word(rng: random.Random, n: int = 10) -> str:
    """A made-up id: ``zz`` then random characters (no route template holds ``zz``)."""
    return "zz" + "".join(rng.choice(string.ascii_letters + string.digits + "-_.~:@")
                          for _ in range(n))


def _hostile(rng: random.Random, method: str, shape: int, key: str | None
             ) -> tuple[str, str, dict[str, str], object]:
    w = lambda: _word(rng)  # noqa: E731
    headers = {"User-Agent": _word(rng, 30), "Origin": f"https://{w()}.example",
               "X-API-Key": key or w()}
    paths = (f"/{w()}/{w()}", f"/v1/{w()}", f"/v1/users/{w()}/recommendations",
             f"/v1/items/{w()}/similar?context={w()}", f"/dashboard/{w()}",
             f"/sdk/{w()}.js", f"/v1/admin/experiments/{w()}/report",
             f"/v1/users/{w()}/{w()}", "/v1/events", "/v1/identify")
    body = {"type": w(), "user_id": w(), "item_id": w(), "recommendation_id": w(),
            "context": {"page": w(), w(): w()}}
    return method, paths[shape], headers, body


async def test_hostile_traffic_adds_no_label_values(topics: Settings) -> None:
    s = topics.model_copy(update={"tracking_keys": TRACK, "read_keys": READ,
                                  "admin_keys": ADMIN, "cors_origins": ORIGIN})
    rng = random.Random(7)
    async with running(s) as client:
        # Every path shape with every method and key once: the series they add are
        # those of the route templates.
        for method in _METHODS:
            for shape in range(10):
                for key in _KEYS:
                    method_, path, headers, body = _hostile(rng, method, shape, key)
                    await client.request(method_, path, headers=headers, json=body)
        await client.get("/metrics")  # (a scrape is counted too)
        before = _series((await client.get("/metrics")).text)
        for _ in range(600):
            method, path, headers, body = _hostile(
                rng, rng.choice((*_METHODS, _word(rng, 5).upper())), rng.randrange(10),
                rng.choice(_KEYS))
            await client.request(method, path, headers=headers, json=body)
        text = (await client.get("/metrics")).text
    counted = _requests(text)
    assert {method for method, _, _ in counted} <= METHODS | {"other"}
    assert not [route for _, route, _ in counted if "zz" in route.lower()]
    # The random ids, keys, types, contexts and methods went nowhere near a label: 600
    # more requests of the shapes already seen add no series.
    assert sorted(_series(text) - before) == []
