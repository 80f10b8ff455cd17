"""Experiments through the API against a real broker and Redis: the admin contract,
deterministic and sticky assignment (across processes and identify), exposure records on
Kafka, and holdout entities that never receive a personalized list from any route, with
the fast path on or off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from api.app import create_app
from core.attribution import experiment_of, parse_recommendation_id
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.experiments import assign_variant
from tests.integration.api.app_client import assert_error, envelopes, running

pytestmark = pytest.mark.integration

K = RedisKeys()
ADMIN, READ, TRACK = "exp-admin-key-0123456", "exp-read-key-01234567", "exp-track-key-0123456"
NAMES, WEIGHTS = ("control", "popular", "treatment"), (0.4, 0.2, 0.4)
SPEC = {"variants": [{"name": "control", "weight": 0.4, "serve": "holdout"},
                     {"name": "popular", "weight": 0.2, "serve": "popular"},
                     {"name": "treatment", "weight": 0.4, "serve": "personalized"}],
        "status": "running"}
A = {"X-API-Key": ADMIN}
R = {"X-API-Key": READ}


def entity_in(variant: str, prefix: str = "u", experiment: str = "recs") -> str:
    """The first id ``{prefix}{n}`` the hash puts in ``variant``."""
    n = 0
    while assign_variant(experiment, f"{prefix}{n}", NAMES, WEIGHTS) != variant:
        n += 1
    return f"{prefix}{n}"


@pytest.fixture
def keyed(topics: Settings) -> Settings:
    return topics.model_copy(update={"admin_keys": ADMIN, "read_keys": READ,
                                     "tracking_keys": TRACK})


@pytest.fixture
def r(keyed: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(keyed.redis_url, decode_responses=True)
    client.zadd(K.popular, {"pop1": 9, "pop2": 8, "pop3": 7})
    yield client
    client.close()


def personal(r: redis.Redis, *entities: str) -> None:
    """Personal lists, session lists and cart for ``entities`` (what the worker writes)."""
    for e in entities:
        r.set(K.user_recs(e), orjson.dumps({"v": "v1", "ts": time.time(),
                                            "items": [["mine1", 1.0], ["mine2", 0.5]]}))
        r.set(K.user_recent(e), orjson.dumps(["seen1"]))
        r.zadd(K.item_cooc("seen1"), {"mine3": 2})
        r.zadd(K.user_cart(e), {"carted": time.time()})
    r.set(K.item_similar("sku-a"), orjson.dumps({"v": "v1", "items": [["mine1", 1.0]]}))
    r.zadd(K.item_carters("carted"), {"someone": time.time()})
    r.zadd(K.user_basket("someone"), {"mine4": time.time()})


async def test_admin_contract(keyed: Settings, r: redis.Redis) -> None:
    async with running(keyed) as c:
        for body, fragment in [
            ({**SPEC, "variants": SPEC["variants"][:2]}, "sum to 1"),
            ({"variants": [{"name": "a", "weight": 0.5, "serve": "holdout"},
                           {"name": "a", "weight": 0.5, "serve": "popular"}]}, "unique"),
            ({"variants": [{"name": "a", "weight": 1, "serve": "magic"}]}, "serve"),
            ({"variants": [{"name": "a", "weight": 0, "serve": "holdout"},
                           {"name": "b", "weight": 1, "serve": "popular"}]}, "greater than 0"),
            ({**SPEC, "status": "paused"}, "status"),
            ({**SPEC, "contexts": ["popular"]}, "contexts"),
            ({"variants": [{"name": "a.b", "weight": 1, "serve": "holdout"}]}, "name"),
        ]:
            resp = await c.put("/v1/admin/experiments/recs", json=body, headers=A)
            assert fragment in assert_error(resp, 422, "validation_error")["error"]["message"]
        assert_error(await c.put("/v1/admin/experiments/bad.id", json=SPEC, headers=A), 422)
        # "/" (sent as %2F, decoded before routing) is refused by the id rule, not a 404
        for method, path in [("PUT", "a%2Fb"), ("GET", "a%2Fb"), ("DELETE", "a%2Fb"),
                             ("GET", "a%2Fb/report"), ("PUT", "a/report")]:
            resp = await c.request(method, f"/v1/admin/experiments/{path}", json=SPEC,
                                   headers=A)
            assert "experiment_id" in assert_error(resp, 422)["error"]["message"]
        assert_error(await c.put("/v1/admin/experiments/recs", json=SPEC, headers=R), 403)
        assert_error(await c.get("/v1/admin/experiments/nope", headers=A), 404, "not_found")
        assert_error(await c.get("/v1/admin/experiments/nope/report", headers=A), 404)
        assert_error(await c.delete("/v1/admin/experiments/nope", headers=A), 404)

        resp = await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        assert resp.status_code == 200, resp.text
        stored = resp.json()
        assert stored["experiment_id"] == "recs" and stored["variants"] == SPEC["variants"]
        assert stored["contexts"] is None and stored["started_at"] and not stored["stopped_at"]
        assert "run" not in stored
        listed = (await c.get("/v1/admin/experiments", headers=A)).json()["experiments"]
        assert listed == [stored]
        report = (await c.get("/v1/admin/experiments/recs/report", headers=A)).json()
        assert report["control"] == "control" and report["srm_p_value"] is None
        assert [v["entities"] for v in report["variants"]] == [0, 0, 0]

        # Enrol one entity: the variants are fixed from then on.
        assert (await c.get(f"/v1/users/{entity_in('control')}/recommendations",
                            headers=R)).json()["experiment"]["variant"] == "control"
        swapped = {**SPEC, "variants": [{**v, "serve": "holdout"} for v in SPEC["variants"]]}
        resp = await c.put("/v1/admin/experiments/recs", json=swapped, headers=A)
        assert "cannot change" in assert_error(resp, 422)["error"]["message"]
        resp = await c.put("/v1/admin/experiments/recs", json={**SPEC, "contexts": ["home"]},
                           headers=A)
        assert resp.json()["contexts"] == ["home"]
        stopped = (await c.put("/v1/admin/experiments/recs",
                               json={**SPEC, "status": "stopped"}, headers=A)).json()
        assert stopped["status"] == "stopped" and stopped["stopped_at"]
        resp = await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        assert "cannot run again" in assert_error(resp, 422)["error"]["message"]

        resp = await c.delete("/v1/admin/experiments/recs", headers=A)
        assert resp.status_code == 204
        assert not r.exists(K.experiment_assign("recs"))
        assert (await c.get("/v1/admin/experiments", headers=A)).json() == {"experiments": []}
        doc = (await c.get("/openapi.json")).json()
        assert {"ExperimentSpec", "ExperimentReport", "Experiment"} <= set(
            doc["components"]["schemas"])
        put = doc["paths"]["/v1/admin/experiments/{experiment_id}"]["put"]
        assert put["requestBody"] and put["tags"] == ["experiments"]


async def test_assignment_deterministic_sticky_and_exposed_once(keyed: Settings,
                                                                r: redis.Redis) -> None:
    entities = [f"d{i}" for i in range(30)]
    async with running(keyed) as c:
        assert (await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)).status_code == 200
        first = {}
        for e in entities:
            body = (await c.get(f"/v1/users/{e}/recommendations", headers=R)).json()
            first[e] = body["experiment"]["variant"]
            assert body["experiment"]["id"] == "recs"
            assert experiment_of(body["recommendation_id"]) == ("recs", first[e])
            assert parse_recommendation_id(body["recommendation_id"])[0] == "home"
        assert first == {e: assign_variant("recs", e, NAMES, WEIGHTS) for e in entities}
        assert set(first.values()) == set(NAMES)
        for e in entities:  # again: same variant, no second exposure
            body = (await c.get(f"/v1/users/{e}/recommendations?context=cart", headers=R)).json()
            assert body["experiment"]["variant"] == first[e]
    # The assignment is recorded: another process, even one where hashing would now say
    # otherwise, serves the stored variant.
    victim = entities[0]
    other = next(n for n in NAMES if n != first[victim])
    r.hset(K.experiment_assign("recs"), victim, other)
    async with running(keyed) as c:
        body = (await c.get(f"/v1/users/{victim}/recommendations", headers=R)).json()
        assert body["experiment"]["variant"] == other
    exposures = [(key, ev) for key, env in envelopes(keyed) for ev in env["events"]
                 if ev["type"] == "exposure"]
    assert sorted(ev["user_id"] for _, ev in exposures) == sorted(entities)
    for key, ev in exposures:
        assert key == ev["user_id"]  # keyed by the entity: its partition, its order
        assert ev["experiment"]["variant"] == first[ev["user_id"]]
        assert ev["experiment"]["unit"] == ev["user_id"] and ev["experiment"]["run"]
    assert all(not v.startswith("?") for v in r.hvals(K.experiment_assign("recs")))


async def test_identified_user_keeps_the_anonymous_variant(keyed: Settings,
                                                           r: redis.Redis) -> None:
    anon = entity_in("control", "anon-")
    user = entity_in("treatment", "user-")  # by hash alone the user would be treated
    mine = entity_in("popular", "own-")
    async with running(keyed) as c:
        await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        assert (await c.get(f"/v1/users/{anon}/recommendations",
                            headers=R)).json()["source"] == "holdout"
        assert (await c.get(f"/v1/users/{mine}/recommendations",
                            headers=R)).json()["experiment"]["variant"] == "popular"
        T = {"X-API-Key": TRACK}
        for a, u in ((anon, user), (anon, user), (anon, mine)):  # a retry; a user of its own
            resp = await c.post("/v1/identify", json={"anonymous_id": a, "user_id": u},
                                headers=T)
            assert resp.status_code == 202, resp.text
        body = (await c.get(f"/v1/users/{user}/recommendations", headers=R)).json()
        assert body["experiment"]["variant"] == "control" and body["items"] == []
        body = (await c.get(f"/v1/users/{mine}/recommendations", headers=R)).json()
        assert body["experiment"]["variant"] == "popular"
    links = [ev for _, env in envelopes(keyed) for ev in env["events"]
             if ev["type"] == "exposure" and ev["user_id"] == user]
    assert len(links) == 1 and links[0]["experiment"]["unit"] == anon
    assert links[0]["experiment"]["variant"] == "control"


CONTEXT_URLS = [
    "/v1/users/{e}/recommendations",
    "/v1/users/{e}/recommendations?context=home&n=5",
    "/v1/users/{e}/recommendations?context=product&item_id=sku-a",
    "/v1/users/{e}/recommendations?context=cart",
    "/v1/users/{e}/recommendations?context=checkout&item_id=carted",
    "/v1/users/{e}/recommendations?context=somewhere-else",
    "/v1/items/sku-a/similar?user_id={e}",
]


@pytest.mark.parametrize("fast", [True, False])
async def test_holdout_never_gets_a_personalized_list(keyed: Settings, r: redis.Redis,
                                                      fast: bool) -> None:
    holdout, treated, popular = (entity_in("control"), entity_in("treatment"),
                                 entity_in("popular"))
    personal(r, holdout, treated, popular)
    settings = keyed.model_copy(update={"api_fast_path": fast})
    async with running(settings) as c:
        # Before the experiment the holdout entity gets its personal list.
        before = (await c.get(f"/v1/users/{holdout}/recommendations", headers=R)).json()
        assert before["source"] == "personalized" and "experiment" not in before
        await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        for url in CONTEXT_URLS:
            for _ in range(2):  # the first answer (exposure) and a later one
                resp = await c.get(url.format(e=holdout), headers=R)
                assert resp.status_code == 200, (url, resp.text)
                body = resp.json()
                assert body["items"] == [] and body["source"] == "holdout", url
                assert body["experiment"] == {"id": "recs", "variant": "control"}
                assert body["recommendation_id"].split(".")[1] == "holdout"
            treated_body = (await c.get(url.format(e=treated), headers=R)).json()
            assert treated_body["experiment"]["variant"] == "treatment"
            assert treated_body["items"], url
            popular_body = (await c.get(url.format(e=popular), headers=R)).json()
            assert popular_body["source"] == "popular", url
            assert {i["item_id"] for i in popular_body["items"]} <= {"pop1", "pop2", "pop3"}
        treated_home = (await c.get(f"/v1/users/{treated}/recommendations", headers=R)).json()
        assert treated_home["source"] == "personalized"
        # explain=true gains a trace on every answer, a holdout's too (nothing was read).
        explained = (await c.get(f"/v1/users/{holdout}/recommendations?explain=true&n=3",
                                 headers=R)).json()
        assert explained["source"] == "holdout"
        assert explained["trace"] == {"sources": [], "dropped": [], "dropped_total": 0}
        assert "trace" not in (await c.get(f"/v1/users/{holdout}/recommendations",
                                           headers=R)).json()
        # Lists without an entity are outside every experiment.
        assert "experiment" not in (await c.get("/v1/popular", headers=R)).json()
        assert "experiment" not in (await c.get("/v1/items/sku-a/similar", headers=R)).json()
        metrics = (await c.get("/metrics")).text
        assert 'streamrec_api_lists_served_total{source="holdout"}' in metrics


async def test_holdout_answers_count_against_the_rate_limit(keyed: Settings,
                                                            r: redis.Redis) -> None:
    holdout = entity_in("control")
    # one read per 100 s: a request after the first is refused however slow the machine
    # (at 1/s, requests more than a second apart, as on a stalled machine, all got 200)
    async with running(keyed.model_copy(update={"rate_limit_read_per_s": 0.01})) as c:
        await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        statuses = [(await c.get(f"/v1/users/{holdout}/recommendations", headers=R)).status_code
                    for _ in range(3)]
        assert statuses[0] == 200 and 429 in statuses[1:]


async def test_contexts_limit_the_experiment(keyed: Settings, r: redis.Redis) -> None:
    holdout = entity_in("control")
    personal(r, holdout)
    async with running(keyed) as c:
        await c.put("/v1/admin/experiments/recs", json={**SPEC, "contexts": ["cart"]},
                    headers=A)
        home = (await c.get(f"/v1/users/{holdout}/recommendations", headers=R)).json()
        assert "experiment" not in home and home["source"] == "personalized"
        cart = (await c.get(f"/v1/users/{holdout}/recommendations?context=cart",
                            headers=R)).json()
        assert cart["source"] == "holdout"


async def test_a_change_through_another_process_applies_within_the_refresh(
        keyed: Settings, r: redis.Redis) -> None:
    holdout = entity_in("control")
    settings = keyed.model_copy(update={"experiment_refresh_s": 0.2})
    async with running(settings) as serving:
        assert "experiment" not in (await serving.get(f"/v1/users/{holdout}/recommendations",
                                                      headers=R)).json()
        admin_app = create_app(settings)
        async with admin_app.router.lifespan_context(admin_app):
            transport = httpx.ASGITransport(app=admin_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as admin:
                await admin.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        deadline = time.monotonic() + 10
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = (await serving.get(f"/v1/users/{holdout}/recommendations", headers=R)).json()
            if "experiment" in body:
                break
            await asyncio.sleep(0.05)
        assert body.get("source") == "holdout"


async def test_enrolment_is_bounded(keyed: Settings, r: redis.Redis) -> None:
    settings = keyed.model_copy(update={"experiment_max_entities": 3})
    async with running(settings) as c:
        await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        tagged = [("experiment" in (await c.get(f"/v1/users/b{i}/recommendations",
                                                headers=R)).json()) for i in range(6)]
        assert tagged == [True, True, True, False, False, False]
        assert r.hlen(K.experiment_assign("recs")) == 3
        assert 0 < r.ttl(K.experiment_assign("recs")) <= settings.experiment_ttl_s


async def test_dashboard_reports_is_the_dashboards_hook(keyed: Settings, r: redis.Redis
                                                        ) -> None:
    """Every experiment's report, running ones first: a stopped experiment's outcome is
    what a merchant looks for (the dashboard showed running ones only)."""
    import redis.asyncio as aioredis

    from api.experiment_store import dashboard_reports

    async with running(keyed) as c:
        await c.put("/v1/admin/experiments/recs", json=SPEC, headers=A)
        await c.put("/v1/admin/experiments/old", json={**SPEC, "status": "stopped"},
                    headers=A)
        await c.get(f"/v1/users/{entity_in('treatment')}/recommendations", headers=R)
        client = aioredis.Redis.from_url(keyed.redis_url, decode_responses=True)
        try:
            reports = await dashboard_reports(client)
        finally:
            await client.aclose()
        assert [(rep["experiment_id"], rep["status"]) for rep in reports] == [
            ("recs", "running"), ("old", "stopped")]
        for rep in reports:
            assert rep == (await c.get(f"/v1/admin/experiments/{rep['experiment_id']}/report",
                                       headers=A)).json()
        dashboard = (await c.get("/v1/admin/dashboard", headers=A)).json()
        assert dashboard["experiments"] == reports  # what the dashboard renders

