"""The worker's batch processor (real Redis) and the evaluator's worker replay (memory)
run the same batch step: fed the same events, they store the same lists.

Both call ``recommender.batch_step`` and ``recommender.relist``; this feeds one event
stream through ``stream.processor.EventProcessor`` against the session's redis-server and
through ``recommender.evaluation.worker_sim.StreamSim``, with the same models (published
to Redis the way the retrain publishes them, loaded back by the worker's loader), and
compares histories, recent lists, popular/trending/co-occurrence and the blended lists.

The blended lists are compared after a model swap's refresh sweep, where both read the
same state. Within a batch they differ by design of the worker: it reads the blend's
candidate lists from Redis before its own batch's increments land (they are written in
the same round trip as the lists), while the replay counts the batch first.

The events carry the abuse rules' inputs (issue 12): a receive time apart from the
client's timestamp (backfills dated hours back, clocks a little ahead), purchases of
large quantities (capped), ids new and repeating within a window (receipts, trust), so
the histories (entries, receipts, first receive time) and the scaled increments of both
sides are compared too. One abuse rule is left out of the comparison: the newcomer
budget, which all workers share and so the worker's writer keeps in Redis; the replay
does not model it (``recommender/evaluation/worker_sim.py``), so the lists are compared
with the budget off, and :func:`test_newcomer_budget_only_cuts_what_the_replay_counts`
checks what it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from recommender.abuse import AbusePolicy
from recommender.evaluation.events import backlog_batches, prepare_events
from recommender.evaluation.replay_model import AlsParams, Retrain
from recommender.evaluation.worker_sim import StreamConfig, StreamSim
from recommender.history import History
from recommender.refresh import REASONS
from schemas import TopicEvent
from stream.history_expiry import EXPIRES, PARTITION
from stream.history_store import DictStore
from stream.live_model import factors_to_bytes, load_model
from stream.processor import RECENT_ITEMS, SIMILAR_ITEMS, EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from stream.row_lists import encode_rows

pytestmark = pytest.mark.integration

#: Trust ramps with history age (continuous receive times), so scores almost never tie:
#: Redis breaks score ties by member, the replay by insertion order. No newcomer budget:
#: the replay does not model it (see the module notes).
POLICY = AbusePolicy(window_s=3600.0, max_per_window=100, ramp_s=3600.0, min_trust=0.3,
                     max_quantity=3, newcomer_budget=0.0)
KNOBS: dict[str, Any] = dict(
    history_max=30, cooc_window=5, list_size=20, trending_half_life_s=1800.0, blend_depth=15,
    sweep_entities=100, sweep_per_batch=4, sweep_window_s=1e9)
POOL = 8  # foldin_candidates: half the items, so pool and neighbourhood both matter
BATCH = 12


def stored_histories(store: DictStore) -> dict[str, Any]:
    """The stored histories without the table's own fields (their expiry and partition,
    ``stream.history_expiry``), which the evaluator's replay does not keep."""
    return {entity: {k: v for k, v in value.items() if k not in (EXPIRES, PARTITION)}
            for entity, value in store.data.items()}


def shop_events(seed: int) -> list[dict[str, Any]]:
    """Ten users over sixteen items; each user prefers one half of the catalog. Events
    arrive in order of ``received_at``; a fifth claim a time up to two hours earlier
    (backfills), a tenth up to a minute later (a clock ahead); purchases buy 1-20."""
    rng = np.random.default_rng(seed)
    types = ["view"] * 6 + ["click"] * 2 + ["add_to_cart", "purchase", "impression"]
    received = 1_700_000_000.0
    out = []
    for n in range(400):
        user = int(rng.integers(10))
        half = (user % 2) * 8
        item = half + int(rng.integers(8)) if rng.random() < 0.8 else int(rng.integers(16))
        received += float(rng.exponential(20.0))
        skew = rng.random()
        ts = (received - float(rng.uniform(0, 7200)) if skew < 0.2
              else received + float(rng.uniform(0, 60)) if skew < 0.3 else received)
        etype = str(rng.choice(types))
        out.append({"event_id": f"e{n}", "type": etype, "user_id": f"u{user}",
                    "item_id": f"i{item}", "ts": round(ts, 3),
                    "received_at": round(received, 3),
                    "quantity": int(rng.integers(1, 21)) if etype == "purchase" else None})
    return prepare_events(out, sort=False)


def topic_event(ev: Mapping[str, Any]) -> tuple[TopicEvent, int]:
    return TopicEvent(event_id=ev["event_id"], type=ev["type"], user_id=ev["user_id"],
                      item_id=ev["item_id"], ts=ev["ts"], received_at=ev["received_at"],
                      quantity=ev["quantity"]), 0


async def publish(client: aioredis.Redis, keys: RedisKeys, retrain: Retrain,
                  depth: int) -> str:
    """What ``stream/retrain.py`` publishes for the worker: ids, factors, parameters and
    every item's neighbour list as model rows (``stream.row_lists``)."""
    model = retrain.model
    version = f"v{model.version}"
    ids = model.item_map.ids
    rows: dict[str | bytes, bytes] = {}
    for item in ids:
        scored = retrain.similar(item, depth)
        rows[item] = encode_rows(model.item_map.indices([i for i, _ in scored]),
                                 np.array([s for _, s in scored]))
    await client.set(keys.model_item_ids(version), orjson.dumps(ids))
    await client.set(keys.model_item_factors(version), factors_to_bytes(model.item_factors))
    await client.hset(keys.model_meta(version), mapping={
        "regularization": repr(model.regularization), "alpha": repr(model.alpha)})
    await client.hset(keys.model_similar_rows(version), mapping=rows)
    return version


async def zlist(client: aioredis.Redis, key: str) -> list[tuple[str, float]]:
    return [(m.decode(), s) for m, s in await client.zrevrange(key, 0, -1, withscores=True)]


def same_scores(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)


async def test_processor_and_replay_store_the_same_lists(settings: Any) -> None:
    events = shop_events(seed=3)
    warmup, stream = events[:240], events[240:]
    sim = StreamSim(StreamConfig(**KNOBS, batch_size=BATCH, retrain_interval_s=0,
                                 abuse=POLICY, foldin_candidates=POOL,
                                 recent_items=RECENT_ITEMS, similar_items=SIMILAR_ITEMS),
                    AlsParams(factors=4, iterations=5, regularization=0.1, alpha=10.0))
    client = aioredis.Redis.from_url(settings.redis_url)
    keys = RedisKeys()
    live: dict[str, Any] = {"model": None}
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(**KNOBS, abuse=POLICY), lambda: live["model"])
    store = DictStore()

    # The backlog without a model, then one retrain (as `streamrec train` after a load).
    sim.load_backlog(warmup)
    for batch in backlog_batches(warmup, size=BATCH):
        await proc.process([topic_event(e) for e in batch], store)
    assert sim.retrained is not None
    version = await publish(client, keys, sim.retrained, KNOBS["blend_depth"])
    live["model"] = await load_model(client, keys, version, regularization=0.0, alpha=0.0,
                                     candidate_limit=POOL)
    assert live["model"] is not None and live["model"].pool is not None

    # The stream with the model live; one batch redelivered (counted and listed once).
    # The first batches also sweep the entities active in the backlog onto the model.
    batches = list(backlog_batches(stream, size=BATCH))
    swept = 0
    for batch in [*batches[:2], batches[1], *batches[2:]]:
        sim.process(batch)
        swept += (await proc.process([topic_event(e) for e in batch], store)).entities_swept
    assert swept == sim.swept > 0

    assert stored_histories(store) == sim.tables and len(sim.tables) == 10
    # The abuse rules' state is part of what was compared: receipts, first receive
    # times, entries whose receive time is not their claimed time.
    histories = [History.from_dict(h) for h in sim.tables.values()]
    assert all(h.receipts and h.first_received is not None for h in histories)
    assert any(e[3] < e[4] for h in histories for e in h.entries)  # backfilled
    for entity in sim.tables:
        assert orjson.loads(await client.get(keys.user_recent(entity))) == \
            sim.recent_items(entity)
    popular, trending = sim.popular_top(100), sim.trending_top(100)
    assert len({s for _, s in popular}) == len(popular)  # no ties (see POLICY)
    same_scores(await zlist(client, keys.popular), popular)
    same_scores(await zlist(client, keys.trending), trending)
    for item in sim.counts.cooc:
        same_scores(await zlist(client, keys.item_cooc(item)), sim.counts.cooc_top(item, 100))

    for entity in {str(e["entity"]) for e in stream}:  # lists of the live model
        assert orjson.loads(await client.get(keys.user_recs(entity)))["v"] == version
        assert entity in sim.blended

    # A retrain goes live; both re-list every remembered entity on it (the idle sweep).
    assert sim.retrain(float(events[-1]["ts"]))
    assert sim.retrained is not None
    version = await publish(client, keys, sim.retrained, KNOBS["blend_depth"])
    live["model"] = await load_model(client, keys, version, regularization=0.0, alpha=0.0,
                                     candidate_limit=POOL)
    sim.idle()
    assert (await proc.relist_idle(store)).entities_swept == sim.swept - swept == len(sim.tables)
    for entity in sorted(sim.tables):
        stored = orjson.loads(await client.get(keys.user_recs(entity)))
        assert stored["v"] == version
        want = sim.blended[entity]
        assert [(i, r) for i, _, r in stored["items"]] == \
            [(i, REASONS[source]) for i, _, source in want]
        assert [s for _, s, _ in stored["items"]] == \
            pytest.approx([s for _, s, _ in want], abs=1e-6)
    await client.aclose()


async def test_newcomer_budget_only_cuts_what_the_replay_counts(settings: Any) -> None:
    """With the newcomer budget on, the worker's writer caps what not yet trusted ids add
    to an item per window (kept in Redis: all workers share it). The replay does not
    model it: same histories, and the worker's popular scores are the replay's or less."""
    events = shop_events(seed=5)[:120]  # the first 40 minutes: every id still new
    policy = AbusePolicy(window_s=3600.0, max_per_window=100, ramp_s=3600.0,
                         min_trust=0.3, max_quantity=3, newcomer_budget=2.0)
    sim = StreamSim(StreamConfig(**KNOBS, batch_size=BATCH, retrain_interval_s=0,
                                 abuse=policy), AlsParams())
    client = aioredis.Redis.from_url(settings.redis_url)
    keys = RedisKeys()
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(**KNOBS, abuse=policy), lambda: None)
    store = DictStore()
    for batch in backlog_batches(events, size=BATCH):
        sim.process(batch, timed=False)
        await proc.process([topic_event(e) for e in batch], store)
    assert stored_histories(store) == sim.tables
    worker = dict(await zlist(client, keys.popular))
    replay = dict(sim.popular_top(100))
    assert set(worker) == set(replay)
    assert all(worker[i] <= replay[i] + 1e-9 for i in replay)
    assert all(worker[i] <= policy.newcomer_budget + 1e-9 for i in worker)
    assert any(worker[i] < replay[i] - 1e-6 for i in replay)  # the budget did cut
    await client.aclose()
