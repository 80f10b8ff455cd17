"""Issue 12's acceptance, through the public API of real processes on real servers.

An API process and a worker process run on the session's Tansu broker and redis-server,
with the production settings of docker-compose (keys, ``require_catalog``). The shop has
history: 200 shoppers' views of the last hours, loaded straight onto the topic as a
backfill of the shop's logs is (``streamrec load --via kafka``: the record time is the
receive time). Then, through ``POST /v1/events`` with the public tracking key:

* **the attack**: 300 fresh anonymous ids each send a view dated 23 h back, a current
  view and a purchase with the largest accepted quantity dated as far ahead as accepted,
  all of one item; one more id sends 200 views of another item spread over the past 20
  hours — neither item may reach the top 10 of ``/v1/popular`` or ``/v1/trending``;
* **a genuine rise**: 120 of the shoppers view and cart a new item, which must get in.

The source address limit is lifted here (the attacker is taken to own many addresses;
``api/test_tracking_limits.py`` covers that limit), so what holds the attack is the abuse
policy alone.

The second test floods the API with 10,000 events of random fresh anonymous ids about
random items the catalog does not hold: Redis must grow by less than
:data:`MAX_BYTES_PER_EVENT` per event, create no per-item key, and every per-entity key
must expire.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from core.net import free_port, wait_for_port
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from schemas.events import MAX_QUANTITY
from streamrec.ops.load import produce_direct
from streamrec.stack.servers import spawn, stop_pid
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

K = RedisKeys()
TRACK, READ, ADMIN = "trk-accept-0123456789", "read-accept-012345678", "adm-accept-0123456789"
#: Redis growth allowed per flooding event (measured: docs/reliability.md, "Bounded state").
MAX_BYTES_PER_EVENT = 512
CATALOG = [f"item-{i}" for i in range(40)] + ["rising", "evil-a", "evil-b"]


class Bar:
    """Stands in for tqdm."""

    def update(self, n: int) -> None:
        """Ignore progress."""


@pytest.fixture
def shop(settings: Settings, start_worker: Callable[..., Any], tmp_path: Any
         ) -> Iterator[tuple[httpx.Client, Settings, redis.Redis]]:
    """Worker and API processes with compose's production settings, and the catalog."""
    s = settings.model_copy(update={
        "api_port": free_port(), "tracking_keys": TRACK, "read_keys": READ,
        "admin_keys": ADMIN, "require_catalog": True, "rate_limit_address_per_s": 1e6,
        "rate_limit_address_burst": 1e6})
    start_worker(require_catalog=True)
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=tmp_path / "api.log",
                env=env_for_child(s))
    r = redis.Redis.from_url(s.redis_url)
    try:
        wait_for_port("127.0.0.1", s.api_port, timeout=30, proc=api)
        with httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=30) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "API ready")
            resp = client.post("/v1/items", headers={"X-API-Key": ADMIN}, json={
                "items": [{"item_id": i, "name": i, "price": 10.0} for i in CATALOG]})
            assert resp.status_code == 202, resp.text
            wait_for(lambda: all(r.exists(K.item_meta(i)) for i in CATALOG), 30, "catalog")
            yield client, s, r
    finally:
        r.close()
        stop_pid(api.pid)


def processed(r: redis.Redis) -> int:
    return int(r.hget(K.stats, "processed") or 0)


def track(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    """Post in batches of 500 as a well-behaved client does: a 429 (the per-key limit of
    5,000 events/s, reached on a fast machine) accepted nothing, so wait its Retry-After
    and send the same batch again."""
    for start in range(0, len(events), 500):
        for _ in range(30):
            resp = client.post("/v1/events", json={"events": events[start:start + 500]},
                               headers={"X-API-Key": TRACK})
            if resp.status_code != 429:
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        assert resp.status_code == 202, resp.text


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def history(now: float, rng: random.Random) -> list[dict[str, Any]]:
    """200 shoppers first seen 3-5 h ago, browsing 40 items with a skewed taste."""
    events = []
    for u in range(200):
        first = now - rng.uniform(3, 5) * 3600
        times = [first] + [now - rng.uniform(600, 3 * 3600) for _ in range(14)]
        for k, ts in enumerate(times):
            item = f"item-{min(int(rng.expovariate(0.12)), 39)}"
            events.append({"event_id": f"bg-{u}-{k}", "type": "view", "user_id": f"u{u}",
                           "item_id": item, "ts": ts})
    events.sort(key=lambda e: e["ts"])
    return events


def top(client: httpx.Client, path: str) -> list[tuple[str, float]]:
    resp = client.get(f"{path}?n=10", headers={"X-API-Key": READ})
    assert resp.status_code == 200, resp.text
    return [(i["item_id"], i["score"]) for i in resp.json()["items"]]


def test_forged_events_stay_out_of_the_top_10_a_genuine_rise_gets_in(
        shop: tuple[httpx.Client, Settings, redis.Redis]) -> None:
    client, s, r = shop
    rng = random.Random(12)
    now = time.time()
    background = history(now, rng)
    produce_direct(s, iter(background), batch=500, progress=Bar())
    wait_for(lambda: processed(r) >= len(background), 120, "history processed")
    before = {"popular": top(client, "/v1/popular"), "trending": top(client, "/v1/trending")}

    ahead = now + s.max_future_skew_s - 30  # as far ahead as accepted (minus clock slack)
    attack = []
    for i in range(300):
        anon = f"atk-{i}"
        attack += [
            {"type": "view", "anonymous_id": anon, "item_id": "evil-a",
             "timestamp": iso(now - 23 * 3600)},
            {"type": "view", "anonymous_id": anon, "item_id": "evil-a"},
            {"type": "purchase", "anonymous_id": anon, "item_id": "evil-a",
             "quantity": MAX_QUANTITY, "price": 1e9, "timestamp": iso(ahead)},
        ]
    sweeper = [{"type": "view", "anonymous_id": "sweeper", "item_id": "evil-b",
                "timestamp": iso(now - 20 * 3600 + k * 360)} for k in range(200)]
    genuine = [{"type": etype, "user_id": f"u{u}", "item_id": "rising"}
               for u in range(120) for etype in ("view", "add_to_cart")]
    track(client, attack)
    track(client, sweeper)
    track(client, genuine)
    sent = len(background) + len(attack) + len(sweeper) + len(genuine)
    wait_for(lambda: processed(r) >= sent, 120, "live events processed")

    lists = {"popular": top(client, "/v1/popular"), "trending": top(client, "/v1/trending")}
    print(f"\nACCEPTANCE before: {before}\nACCEPTANCE after: {lists}")
    for name, ranked in lists.items():
        names = [i for i, _ in ranked]
        assert "evil-a" not in names and "evil-b" not in names, (name, ranked)
        assert "rising" in names, (name, ranked)
    # What the forged items did get, next to the 10th place.
    scores = {m.decode(): sc for m, sc in r.zrange(K.popular, 0, -1, withscores=True)}
    print(f"ACCEPTANCE popular: evil-a={scores.get('evil-a', 0):.3f} "
          f"evil-b={scores.get('evil-b', 0):.3f} rising={scores['rising']:.1f} "
          f"10th={lists['popular'][-1][1]:.1f}")
    # Exact counts still report every forged event.
    stats = client.get("/v1/admin/items/evil-a/stats", headers={"X-API-Key": ADMIN}).json()
    assert (stats["views"], stats["purchases"], stats["distinct_users"]) == (600, 300, 300)
    evil_b = client.get("/v1/admin/items/evil-b/stats", headers={"X-API-Key": ADMIN}).json()
    assert evil_b["views"] == 200


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def test_a_flood_of_fresh_ids_and_unknown_items_stays_small_and_expires(
        shop: tuple[httpx.Client, Settings, redis.Redis]) -> None:
    client, s, r = shop
    rng = random.Random(7)
    types = ["view"] * 5 + ["add_to_cart", "purchase", "click", "remove_from_cart"]
    flood: list[dict[str, Any]] = []
    for n in range(10_000):
        event: dict[str, Any] = {"anonymous_id": f"fresh-{rng.getrandbits(64):016x}"}
        if n % 10 == 9:
            event |= {"type": "impression",
                      "item_ids": [f"nope-{rng.getrandbits(48):x}" for _ in range(20)],
                      "recommendation_id": f"home.{rng.getrandbits(32):x}.forged"}
        else:
            event |= {"type": rng.choice(types), "item_id": f"nope-{rng.getrandbits(48):x}",
                      "quantity": 3}
        flood.append(event)
    base = processed(r)
    time.sleep(1.0)  # let the catalog's writes settle before the baseline
    start = used_memory(r)
    track(client, flood)
    wait_for(lambda: processed(r) >= base + len(flood), 120, "flood processed")
    # Rate-limit buckets expire once drained (tens of ms per id): wait them out.
    buckets = K.pattern("rate_limit", "*")
    wait_for(lambda: not list(r.scan_iter(match=buckets, count=1000)), 30, "buckets")
    grown = used_memory(r) - start
    print(f"\nACCEPTANCE flood: used_memory +{grown} bytes for {len(flood)} events "
          f"({grown / len(flood):.0f} B/event)")
    assert grown < MAX_BYTES_PER_EVENT * len(flood)
    per_item = [k for k in r.scan_iter(match=K.item_pattern("nope-*"), count=1000)]
    assert not per_item, per_item[:5]
    popular = {m.decode() for m in r.zrange(K.popular, 0, -1)}
    assert not {m for m in popular if m.startswith("nope-")}
    ttls = {key: r.ttl(key) for key in r.scan_iter(match=K.entity_pattern, count=1000)}
    assert len(ttls) >= 9_000  # every fresh id has at least its recent list
    assert all(0 < ttl <= s.anonymous_ttl_s for ttl in ttls.values()), \
        [k for k, t in ttls.items() if not 0 < t <= s.anonymous_ttl_s][:5]
