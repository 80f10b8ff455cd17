"""A backfill of a shop's real history ranks ``popular`` by what its shoppers did.

Every id of an imported history is new to the worker, so the manipulation rules
(recommender/abuse.py) used to count nearly all of it at the newcomer rate and cap each
item at the newcomer budget, while the one shopper whose history spanned the trust ramp
counted fully: on the Taobao window an item viewed by 32 shoppers ranked 90th, behind
items one shopper viewed and bought. ``streamrec load --via kafka`` marks its events as
an operator's backfill, counted with full trust (the per-entity caps still apply).
Real Tansu + redis-server and a real worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.ops.load import produce_direct, read_events
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()
T0 = 1_511_658_000  # 2017-11-26 01:00 UTC, as the Taobao window


class Bar:
    """Stands in for tqdm."""

    def update(self, n: int) -> None:
        """Ignore progress."""


def test_backfill_ranks_popular_by_real_popularity(settings: Settings, tmp_path: Path,
                                                   start_worker: Callable[..., Any]) -> None:
    # "wide": 40 shoppers view it once each within minutes; "narrow": one shopper views
    # it and buys it two hours later (past the trust ramp); then 40 fillers, once each.
    lines = [f"{u},wide,1,pv,{T0 + u}" for u in range(40)]
    lines += [f"buyer,narrow,1,pv,{T0}", f"buyer,narrow,1,buy,{T0 + 7200}"]
    lines += [f"f{u},filler-{u},1,pv,{T0 + 60 + u}" for u in range(40)]
    data = tmp_path / "shop.csv"
    data.write_text("\n".join(sorted(lines, key=lambda s: int(s.rsplit(",", 1)[1]))) + "\n")
    start_worker()
    sent = produce_direct(settings, read_events(data), batch=500, progress=Bar())
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        wait_for(lambda: int(client.hget(K.stats, "processed") or 0) >= sent, 60,
                 "backfill processed")
        ranked = client.zrevrange(K.popular, 0, -1, withscores=True)
    finally:
        client.close()
    scores = dict(ranked)
    assert ranked[0][0] == "wide", ranked[:5]
    # Every view of a distinct shopper counts fully: 40 views, not 40 at 5 %.
    assert scores["wide"] == pytest.approx(40.0)
    assert scores["narrow"] < scores["wide"]
    assert scores["filler-0"] == pytest.approx(1.0)
