"""What popular and trending mean through time, end to end on real servers.

API process → broker → worker process → Redis → API, with client timestamps: trending
is what rose lately (a backfill dated days back is not today's trend), popular counts
every event whenever it happened.
"""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest

from core.settings import Settings
from tests.integration.test_e2e import ADMIN, READ, TRACK, e2e  # noqa: F401
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def _scores(client: httpx.Client, path: str) -> dict[str, tuple[float, str]]:
    resp = client.get(path, headers={"X-API-Key": READ})
    assert resp.status_code == 200, resp.text
    return {i["item_id"]: (i["score"], i["reason"]) for i in resp.json()["items"]}


def test_a_backfill_is_not_trending_now_a_fresh_rise_is(
        e2e: tuple[httpx.Client, Settings]) -> None:  # noqa: F811
    client, _ = e2e
    items = [{"item_id": f"t-{k}", "name": f"Item {k}", "price": 1.0 + k, "category": "c",
              "in_stock": True} for k in range(10)]
    assert client.post("/v1/items", json={"items": items},
                       headers={"X-API-Key": ADMIN}).status_code == 202
    now = time.time()
    events = (
        # spread: 60 shoppers' views over the past three days
        [{"type": "view", "user_id": f"old{u}", "item_id": "t-spread",
          "timestamp": _iso(now - 3 * 86400 + u * 3600)} for u in range(60)]
        # backfill: 40 shoppers' views, all two days ago
        + [{"type": "view", "user_id": f"bf{u}", "item_id": "t-backfill",
            "timestamp": _iso(now - 2 * 86400 + u)} for u in range(40)]
        # burst: 20 shoppers' views in the last minute
        + [{"type": "view", "user_id": f"new{u}", "item_id": "t-burst",
            "timestamp": _iso(now - 60 + u)} for u in range(20)])
    resp = client.post("/v1/events", json={"events": events}, headers={"X-API-Key": TRACK})
    assert resp.status_code == 202 and resp.json()["accepted"] == 120, resp.text

    watched = {"t-spread", "t-backfill", "t-burst"}
    wait_for(lambda: watched <= set(_scores(client, "/v1/popular?n=20")), 10, "counted")
    popular = _scores(client, "/v1/popular?n=20")
    # Popular counts every event whenever it happened: more shoppers, more weight.
    assert popular["t-spread"][0] > popular["t-burst"][0] > 0
    assert popular["t-backfill"][0] > popular["t-burst"][0]

    trending = _scores(client, "/v1/trending?n=20")
    top = max(trending, key=lambda i: trending[i][0])
    assert top == "t-burst" and trending[top][1] == "trending", trending
    # Days-old events weigh 2^-(age / 2 h) of a fresh one: nothing left of them now.
    for old in ("t-spread", "t-backfill"):
        assert trending.get(old, (0.0, ""))[0] < 0.01 * trending["t-burst"][0], trending
