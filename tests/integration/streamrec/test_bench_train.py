"""``streamrec bench train`` on a real broker and Redis: its retrains run under a key
prefix of their own, so the stack's live model and lists stay as they were, and leave
no key behind."""

from __future__ import annotations

import asyncio

import pytest
import redis

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.bench.train import report_table, retrain_once, summarize
from streamrec.bench.train_time import produce_interactions

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_bench_retrains_leave_the_live_model_and_no_keys(settings: Settings) -> None:
    kafka_tools.create_topics(settings)
    asyncio.run(produce_interactions(settings, settings.topic_events, 3_000, shoppers=200,
                                     items=120))
    client = redis.Redis.from_url(settings.redis_url)
    live = RedisKeys()
    client.set(live.model_current, "shop-model")
    client.set(live.user_recs("u1"), b"[]")
    before = sorted(client.keys("*"))
    try:
        runs = [retrain_once(settings, settings.topic_events, it, cg)
                for it, cg in ((2, 3), (3, 2), (2, 3))]
        assert sorted(client.keys("*")) == before
        assert client.get(live.model_current) == b"shop-model"
    finally:
        client.close()
    assert [r["iterations"] for r in runs] == [2, 3, 2]
    for r in runs:
        assert r["n_events"] == 3_000 and 0 < r["n_items"] <= 120
        assert set(r["stages"]) == {"read", "fit", "similar", "swap"}
        assert r["seconds"] >= sum(v for v in r["stages"].values() if v) - 0.05
    summary = summarize(runs)
    assert list(summary) == ["2 × 3", "3 × 2"] and len(summary["2 × 3"]["seconds"]) == 2
    assert "| 3 × 2 |" in report_table(summary)


def test_bench_retrain_times_a_log_smaller_than_the_workers_minimum(settings: Settings
                                                                    ) -> None:
    # `bench train --events 1` (the smallest its flags allow) ended in a NotEnoughData
    # traceback: the worker's STREAMREC_RETRAIN_MIN_EVENTS (50) applied to the bench too.
    assert settings.retrain_min_events > 3
    kafka_tools.create_topics(settings)
    asyncio.run(produce_interactions(settings, settings.topic_events, 3, shoppers=2,
                                     items=2))
    run = retrain_once(settings, settings.topic_events, 2, 2)
    assert run["n_events"] == 3 and run["seconds"] >= 0
