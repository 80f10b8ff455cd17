"""The dashboard's API side against a real broker and Redis: the page and its files (no
key, strict CSP, nothing else served), the data endpoint (admin key; the pipeline numbers
of `streamrec status --json`; one cached, single-flight aggregate however many ask), and
the item and user lookups. The page itself runs in Chromium in tests/browser."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from api import dashboard_feed
from core.pipeline_status import empty_status
from core.redis_keys import RedisKeys
from core.settings import Settings
from core.stack_processes import proc_start_time
from tests.integration.api.app_client import assert_error, running

pytestmark = pytest.mark.integration
READ, ADMIN = "dash-read-key-01234", "dash-admin-key-0123"
K = RedisKeys()


def keyed(settings: Settings) -> Settings:
    return settings.model_copy(update={"read_keys": READ, "admin_keys": ADMIN})


async def test_the_page_and_its_files_need_no_key_and_allow_nothing_foreign(
        topics: Settings) -> None:
    async with running(keyed(topics), wait_ready=False) as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "form-action 'none'" in csp
        assert "connect-src 'self'" in csp and "default-src 'none'" in csp
        assert b'src="/dashboard/dashboard.js"' in page.content
        assert b"http://" not in page.content and b"https://" not in page.content  # no CDN
        for name, kind in (("dashboard.js", "text/javascript"), ("charts.js", "text/javascript"),
                           ("dom.js", "text/javascript"), ("lookup.js", "text/javascript"),
                           ("dashboard.css", "text/css")):
            r = await client.get(f"/dashboard/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
            again = await client.get(f"/dashboard/{name}",
                                     headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304
        for name in ("index.html", "nope.js", "..%2Fapp.py", "x" * 65):
            assert (await client.get(f"/dashboard/{name}")).status_code in (404, 422), name


async def test_unknown_file_names_leave_no_trace_in_memory(topics: Settings) -> None:
    # The route is public and the name is the client's: a flood of fresh names must
    # not grow the process (the file cache held one entry per name asked for).
    from api.routes import dashboard

    cached = getattr(dashboard, "_read_asset", dashboard.asset)
    async with running(keyed(topics), wait_ready=False) as client:
        assert (await client.get("/dashboard/dom.js")).status_code == 200
        for n in range(300):
            assert (await client.get(f"/dashboard/fresh-{n:04d}.js")).status_code == 404
        assert cached.cache_info().currsize <= len(dashboard.ASSETS)
        assert (await client.get("/dashboard/dom.js")).status_code == 200


async def test_data_needs_an_admin_key_and_has_the_status_keys(topics: Settings) -> None:
    async with running(keyed(topics)) as client:
        assert_error(await client.get("/v1/admin/dashboard"), 401)
        assert_error(await client.get("/v1/admin/dashboard", headers={"X-API-Key": READ}), 403)
        r = await client.get("/v1/admin/dashboard", headers={"X-API-Key": ADMIN})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        data = r.json()
        assert set(data) == {"generated_at", "refresh_s", "pipeline", "rates", "series",
                             "shop", "experiments"}
        assert set(data["pipeline"]) == set(empty_status(topics))
        assert data["pipeline"]["errors"] == {}
        assert data["pipeline"]["generated_at"] == data["generated_at"]
        # events/s: the workers' rate, the number `streamrec status --json` has
        assert data["rates"]["events_per_s"] == data["pipeline"]["events_per_s"]
        assert set(data["shop"]) == {"popular", "trending", "popular_out_of_stock",
                                     "attribution", "errors"}
        assert data["experiments"] == []  # none running


async def test_one_aggregate_serves_every_viewer(topics: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_feed, "MAX_AGE_S", 60.0)  # nothing expires in this test
    headers = {"X-API-Key": ADMIN}
    async with running(keyed(topics)) as client:
        answers = await asyncio.gather(*(client.get("/v1/admin/dashboard", headers=headers)
                                         for _ in range(20)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.content for a in answers}) == 1  # the same prepared bytes
        feed = client._transport.app.state.dashboard_feed  # type: ignore[attr-defined]
        assert feed.recomputed == 1
        monkeypatch.setattr(dashboard_feed, "MAX_AGE_S", 0.0)
        later = await client.get("/v1/admin/dashboard", headers=headers)
        assert feed.recomputed == 2 and len(later.json()["series"]["t"]) == 2


async def test_shop_lists_name_items_and_warn_about_popular_items_out_of_stock(
        topics: Settings) -> None:
    client_r = redis.Redis.from_url(topics.redis_url)
    client_r.zadd(K.popular, {"a": 9.0, "b": 5.0, "ghost": 1.0})
    client_r.zadd(K.trending, {"b": 4.0})
    client_r.hset(K.item_meta("a"), mapping={"name": "Apple", "in_stock": "0", "deleted": "0"})
    client_r.hset(K.item_meta("b"), mapping={"name": "Bread", "in_stock": "1", "price": "2.5"})
    client_r.hset(K.attribution("popular"), mapping={"impression": 10, "click": 2})
    client_r.close()
    async with running(keyed(topics)) as client:
        shop = (await client.get("/v1/admin/dashboard", headers={"X-API-Key": ADMIN})
                ).json()["shop"]
    assert [(i["item_id"], i["name"], i["in_stock"]) for i in shop["popular"]] == [
        ("a", "Apple", False), ("b", "Bread", True), ("ghost", None, None)]
    assert [i["item_id"] for i in shop["popular_out_of_stock"]] == ["a"]
    assert shop["trending"][0]["item_id"] == "b" and shop["trending"][0]["price"] == 2.5
    [row] = shop["attribution"]["by_origin"]
    assert row["name"] == "popular" and row["ctr"] == 0.2


async def test_lookups_show_catalog_stock_history_cart_and_the_stored_list(
        topics: Settings) -> None:
    r = redis.Redis.from_url(topics.redis_url)
    r.hset(K.item_meta("tea"), mapping={"name": "Green tea", "price": "4.5", "currency": "EUR",
                                        "in_stock": "0", "updated_at": "1700000000.5",
                                        "properties": '{"leaf": "sencha"}'})
    r.set(K.user_recent("u7"), orjson.dumps(["tea", "cup", "tea-pot"]))
    r.zadd(K.user_cart("u7"), {"cup": 1.0})
    r.zadd(K.user_bought("u7"), {"tea": 1.0})
    r.set(K.user_recs("u7"), orjson.dumps({"v": "v1", "ts": 1700000001.0,
                                           "items": [["cup", 1.0], ["pot", 0.5]]}))
    r.close()
    headers = {"X-API-Key": ADMIN}
    async with running(keyed(topics), wait_ready=False) as client:
        tea = (await client.get("/v1/admin/items/tea", headers=headers)).json()
        assert tea == {"item_id": "tea", "known": True, "name": "Green tea",
                       "category": None, "price": 4.5, "currency": "EUR", "in_stock": False,
                       "properties": {"leaf": "sencha"}, "deleted": False,
                       "updated_at": 1700000000.5}
        nobody = (await client.get("/v1/admin/items/never-seen", headers=headers)).json()
        assert nobody["known"] is False and nobody["in_stock"] is None
        user = (await client.get("/v1/admin/users/u7", headers=headers)).json()
        assert [i["item_id"] for i in user["recent"]] == ["tea", "cup", "tea-pot"]
        assert user["recent"][0] == {"item_id": "tea", "name": "Green tea", "in_stock": False}
        assert user["recent"][1]["in_stock"] is None  # not in the catalog
        assert [i["item_id"] for i in user["cart"]] == ["cup"] and user["purchased"] == 1
        assert user["personal_list_size"] == 2 and user["personal_list_version"] == "v1"
        empty = (await client.get("/v1/admin/users/new", headers=headers)).json()
        assert empty["recent"] == [] and empty["personal_list_version"] is None
        assert_error(await client.get("/v1/admin/users/u7", headers={"X-API-Key": READ}), 403)
        assert_error(await client.get("/v1/admin/items/" + "x" * 300, headers=headers), 422)


async def test_lookups_take_ids_with_a_slash(topics: Settings) -> None:
    """API.md allows any id: the dashboard sends ``/`` as ``%2F`` (encodeURIComponent), and
    the item, its stats and the user are found, as on the public id paths."""
    r = redis.Redis.from_url(topics.redis_url)
    r.hset(K.item_meta("sku/1"), mapping={"name": "Slashed", "in_stock": "1"})
    r.hset(K.item_stats("sku/1"), mapping={"view": "3"})
    r.set(K.user_recent("shop/u é"), orjson.dumps(["sku/1"]))
    r.close()
    headers = {"X-API-Key": ADMIN}
    async with running(keyed(topics), wait_ready=False) as client:
        item = await client.get("/v1/admin/items/sku%2F1", headers=headers)
        assert item.status_code == 200 and item.json()["name"] == "Slashed"
        stats = await client.get("/v1/admin/items/sku%2F1/stats", headers=headers)
        assert stats.status_code == 200 and stats.json()["views"] == 3
        deeper = await client.get("/v1/admin/items/sku%2F1%2Fstats/stats", headers=headers)
        assert deeper.json() == {**stats.json(), "item_id": "sku/1/stats", "views": 0}
        user = await client.get("/v1/admin/users/shop%2Fu%20%C3%A9", headers=headers)
        assert user.status_code == 200
        assert user.json()["recent"] == [{"item_id": "sku/1", "name": "Slashed",
                                          "in_stock": True}]
        assert_error(await client.get("/v1/admin/users/" + "u/" * 150, headers=headers), 422)


async def test_a_dead_worker_recorded_by_up_is_an_error_as_in_status(
        topics: Settings, tmp_path: Path) -> None:
    """A worker killed with SIGKILL leaves nothing in Redis once its heartbeat expires
    (~15 s): `streamrec status --json` still names it under ``errors.processes`` from the
    stack's record, and the dashboard must say the same (it said nothing, 2 of 2 workers
    looking like 1 of 1), with the exact broker version the record keeps."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    broker = topics.kafka_bootstrap.split(",")[0]
    (tmp_path / "stack.json").write_text(json.dumps({"processes": {
        "kafka": {"pid": os.getpid(), "proc_start": proc_start_time(os.getpid()),
                  "log": "k.log", "address": broker, "kind": "apache-kafka",
                  "version": "9.8.7"},
        "worker": {"pid": os.getpid(), "proc_start": proc_start_time(os.getpid()),
                   "log": "w.log", "address": ""},
        "worker-2": {"pid": gone.pid, "log": "w2.log", "address": ""},
    }}))
    settings = keyed(topics).model_copy(update={"state_dir": tmp_path})
    async with running(settings) as client:
        data = (await client.get("/v1/admin/dashboard", headers={"X-API-Key": ADMIN})).json()
    pipeline = data["pipeline"]
    assert [(p["name"], p["role"], p["alive"]) for p in pipeline["processes"]] == [
        ("kafka", "kafka-broker", True), ("worker", "worker", True),
        ("worker-2", "worker", False)]
    assert pipeline["errors"] == {"processes": f"not running: worker-2 (pid {gone.pid}); "
                                                "`streamrec up` starts them again"}
    assert pipeline["broker"]["version"] == "9.8.7"  # the record's, as status shows it
