"""Acceptance of the scaled-out shape: ``streamrec up --broker kafka --brokers 3 --redis
cluster --workers 3 --api-processes 2`` keeps the public contract (../shared/API.md) and
ends with what one worker on one Redis ends with for the same events: the same exact
counts per item, the same histories (recent items, cart, purchases) per shopper, and
the same shoppers with a personal list after the same training.

The events (users and anonymous visitors who identify halfway, views, cart adds and
removals, purchases, a catalog with an item out of stock and one deleted) go through the
API with their ids and timestamps, so both runs see exactly the same log.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx
import pytest

from streamrec.ops.status import lists_settled
from tests.conftest import java_missing
from tests.integration.streamrec.test_stack import Stack
from tests.polling import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.e2e, pytest.mark.cluster,
    pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+ (no `java` here)"),
]

ADMIN, TRACK, READ = "acc-admin-key-0123456", "acc-track-key-0123456", "acc-read-key-01234567"
ITEMS = [f"sku-{i}" for i in range(40)]
USERS = [f"au{i}" for i in range(60)]
ANONS = [f"an{i}" for i in range(15)]


def workload(seed: int = 7) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]],
                                      list[dict[str, Any]]]:
    """(catalog, event batches, identify calls): the same every time."""
    rng = random.Random(seed)
    catalog = [{"item_id": item, "name": f"Thing {i}", "price": 3.0 + i,
                "category": f"c{i % 4}", "in_stock": item != "sku-7"}
               for i, item in enumerate(ITEMS)]
    base = time.time() - 3600
    events: list[dict[str, Any]] = []
    for n in range(2400):
        anon = rng.random() < 0.2
        who = rng.choice(ANONS if anon else USERS)
        kind = rng.choices(("view", "add_to_cart", "remove_from_cart", "purchase"),
                           weights=(70, 15, 5, 10))[0]
        item = ITEMS[min(int(rng.expovariate(0.1)), len(ITEMS) - 1)]
        event = {"event_id": f"acc-{n}", "type": kind, "item_id": item,
                 "timestamp": base + n * 0.5}
        event["anonymous_id" if anon else "user_id"] = who
        events.append(event)
    identify = [{"anonymous_id": a, "user_id": f"known-{a}"} for a in ANONS[:8]]
    return catalog, [events[i:i + 200] for i in range(0, len(events), 200)], identify


def feed(http: httpx.Client, stack: Stack) -> int:
    """Catalog, the first half of the events, identify, the rest; a model; returns the
    number of events sent once every one is processed and the lists re-listed."""
    catalog, batches, identify = workload()
    assert http.post("/v1/items", json={"items": catalog}, headers=_admin()).status_code == 202
    assert http.delete("/v1/items/sku-9", headers=_admin()).status_code == 202
    half = len(batches) // 2
    for batch in batches[:half]:
        _post(http, "/v1/events", {"events": batch})
    for call in identify:
        _post(http, "/v1/identify", call)
    for batch in batches[half:]:
        _post(http, "/v1/events", {"events": batch})
    sent = sum(len(b) for b in batches) + len(identify)
    wait_for(lambda: (s := stack.status())["lag"] == 0 and s["processed"] >= sent, 180,
             "every event processed")
    res = stack.cli("train", "--timeout", "120", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return sent


def _admin() -> dict[str, str]:
    return {"X-API-Key": ADMIN}


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    """Post until accepted (a 503 names the ids to send again: the same ones)."""
    for _ in range(60):
        resp = http.post(path, json=body, headers={"X-API-Key": TRACK})
        if resp.status_code == 202:
            return
        assert resp.status_code in (429, 503), resp.text
        time.sleep(float(resp.headers.get("retry-after") or 0.5))
    raise AssertionError(f"{path} never accepted")


def observe(http: httpx.Client) -> dict[str, Any]:
    """Counts per item, history per shopper, and who has a personal list."""
    def get(path: str) -> dict[str, Any]:
        resp = http.get(path, headers=_admin())
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    shoppers = USERS + ANONS + [f"known-{a}" for a in ANONS[:8]]
    counts = {i: get(f"/v1/admin/items/{i}/stats") for i in ITEMS}
    people = {u: get(f"/v1/admin/users/{u}") for u in shoppers}
    return {
        "counts": counts,
        "histories": {u: ([r["item_id"] for r in p["recent"]],
                          [c["item_id"] for c in p["cart"]], p["purchased"],
                          [b["item_id"] for b in p["purchased_items"]])
                      for u, p in people.items()},
        "with_lists": sorted(u for u, p in people.items() if p["personal_list_size"] > 0),
    }


def contract(http: httpx.Client) -> None:
    """API.md's promises, spot-checked on the running shape."""
    read = {"X-API-Key": READ}
    for path in ("/v1/users/au1/recommendations?n=10", "/v1/users/nobody/recommendations",
                 "/v1/items/sku-1/similar?n=5&user_id=au1", "/v1/popular?n=10",
                 "/v1/trending?n=10", "/v1/users/au2/recommendations?context=cart",
                 "/v1/users/au3/recommendations?context=product&item_id=sku-2"):
        resp = http.get(path, headers=read)
        assert resp.status_code == 200, (path, resp.text)
        body = resp.json()
        assert {"recommendation_id", "source", "model_version", "items"} <= set(body)
        ids = [i["item_id"] for i in body["items"]]
        assert len(ids) == len(set(ids)), (path, ids)
        assert not {"sku-7", "sku-9"} & set(ids), (path, body)
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True), path
        assert all(i["in_stock"] is True for i in body["items"])
    bought = {b["item_id"] for b in http.get("/v1/admin/users/au1", headers=_admin()).json()[
        "purchased_items"]}
    home = http.get("/v1/users/au1/recommendations?n=40", headers=read).json()
    assert not bought & {i["item_id"] for i in home["items"]}, "purchases never appear"
    assert http.get("/v1/popular?n=0", headers=read).status_code == 422
    assert http.get("/v1/popular?n=101", headers=read).status_code == 422
    assert http.get("/v1/popular").status_code == 401
    bad = http.post("/v1/events", json={"events": [{"type": "teleport"}]},
                    headers={"X-API-Key": TRACK})
    assert bad.status_code == 422 and "error" in bad.json()
    for path in ("/healthz", "/readyz"):
        assert http.get(path).status_code == 200, path
    assert http.get("/metrics", headers=_admin()).status_code == 200


def run(stack: Stack, *args: str) -> dict[str, Any]:
    stack.env.update(STREAMREC_ADMIN_KEYS=ADMIN, STREAMREC_TRACKING_KEYS=TRACK,
                     STREAMREC_READ_KEYS=READ, STREAMREC_TOPIC_PARTITIONS="4")
    stack.up(*args, ready_s=240)
    # A fresh Redis is rebuilt from the log while the events arrive: the replay must not
    # write a list over a newer one of a live worker (stream.redis_writer), so no wait.
    with httpx.Client(base_url=stack.api_url, timeout=20) as http:
        feed(http, stack)
        # the refresh sweep after the model swap, then a settled view
        wait_for(lambda: lists_settled(stack.status()), 120, "lists re-listed for the model")
        seen = observe(http)
        seen["status"] = {k: v for k, v in stack.status().items()
                          if k in ("model", "model_version", "workers", "processed", "lag")}
        if len(args) > 2:
            contract(http)
    return seen


@pytest.mark.timeout(600)  # two stacks, one of 9 processes: ~2 min alone, more when shared
def test_the_scaled_out_shape_keeps_the_contract_and_matches_one_worker(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.integration.streamrec.test_stack import stack_in

    with stack_in(tmp_path_factory.mktemp("scaled"), down_timeout=180) as stack:
        scaled = run(stack, "--broker", "kafka", "--brokers", "3", "--redis", "cluster",
                     "--workers", "3", "--api-processes", "2")
        status = stack.status()
        assert status["broker"]["brokers"] == 3
        assert status["redis"] == {"mode": "cluster", "nodes": 6, "masters": 3}
        assert [p["role"] for p in status["processes"]].count("worker") == 3
        assert [p["role"] for p in status["processes"]].count("api") == 2
    with stack_in(tmp_path_factory.mktemp("single"), down_timeout=60) as stack:
        single = run(stack)
    assert scaled["counts"] == single["counts"]
    diff = {u: {"scaled": h, "single": single["histories"].get(u)}
            for u, h in scaled["histories"].items() if h != single["histories"].get(u)}
    evidence = tmp_path_factory.getbasetemp() / "histories-diff.json"
    evidence.write_text(json.dumps(diff, indent=1))
    assert not diff, f"{len(diff)} histories differ, see {evidence}"
    lists = {"scaled_only": sorted(set(scaled["with_lists"]) - set(single["with_lists"])),
             "single_only": sorted(set(single["with_lists"]) - set(scaled["with_lists"])),
             "status": {"scaled": scaled["status"], "single": single["status"]}}
    evidence = tmp_path_factory.getbasetemp() / "lists-diff.json"
    evidence.write_text(json.dumps(lists, indent=1, default=str))
    assert scaled["with_lists"] == single["with_lists"] and single["with_lists"], (
        f"{lists['scaled_only']} have a list only scaled out, {lists['single_only']} only "
        f"on one worker; see {evidence}")
