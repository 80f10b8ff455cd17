"""The evaluator: batching, splits, the worker replay, and a planted structure to find."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recommender.evaluation.events import backlog_batches, prepare_events, stream_batches
from recommender.evaluation.methods import EvalSettings
from recommender.evaluation.protocols import checkpoints, holdout_split, synthetic_clock
from recommender.evaluation.replay_model import AlsParams, fit_model
from recommender.evaluation.runner import run_holdout, run_prequential, stable_keep
from recommender.evaluation.worker_sim import StreamConfig, StreamSim
from recommender.foldin import fold_in
from recommender.topn import top_n

GROUPS, ITEMS_PER_GROUP, USERS_PER_GROUP, PER_USER = 6, 10, 20, 8


def planted(seed: int = 0, *, timed: bool) -> list[dict]:
    """Users only touch items of their own group; one group is twice as popular.

    A user's next items are predictable from the group of its earlier ones, while the
    globally popular items are mostly other groups' (the big group dominates the counts),
    so popularity cannot find the structure and a collaborative model must.
    """
    rng = np.random.default_rng(seed)
    events = []
    users = []
    for g in range(GROUPS):
        count = USERS_PER_GROUP * (3 if g == 0 else 1)
        users += [(f"u{g}-{j}", g) for j in range(count)]
    order = rng.permutation(len(users))
    n = 0
    for _ in range(PER_USER):
        for j in order:
            user, g = users[int(j)]
            item = f"i{g}-{int(rng.integers(ITEMS_PER_GROUP))}"
            events.append({"event_id": f"e{n}", "type": "view", "user_id": user,
                           "item_id": item, "ts": float(n) if timed else None})
            n += 1
    return events


SMALL = EvalSettings(
    stream=StreamConfig(retrain_interval_s=60.0, retrain_min_events=50, list_size=50),
    als=AlsParams(factors=8, iterations=10, regularization=0.1, alpha=10.0),
    knn_neighbours=30,
    depth=50,
)


def test_model_finds_the_planted_groups_and_popularity_does_not() -> None:
    events = prepare_events(planted(timed=False), sort=False)
    split = holdout_split(events, fraction=0.2, seed=0)
    train = synthetic_clock(split.train, seed=0, events_per_second=14.0)
    result = run_holdout(train, split.test, settings=SMALL, events_per_second=14.0)
    s = result.summary()
    assert s["popularity"]["cases"] > 100
    assert s["popularity"]["hr@10"] < 0.5
    for method in ("knn_cosine", "als_full", "als_stream", "blend"):
        assert s[method]["hr@10"] > 0.9, method
        assert s[method]["ndcg@10"] > 2 * s["popularity"]["ndcg@10"], method
    assert s["als_stream"]["ndcg@10"] >= 0.9 * s["als_full"]["ndcg@10"]
    assert result.info["retrains"] >= 2
    assert s["als_stream"]["update_s_per_event"] > 0


def test_prequential_finds_the_planted_groups() -> None:
    events = prepare_events(planted(seed=1, timed=True))
    start, end = events[len(events) // 4]["ts"], events[-1]["ts"] + 1
    marks = checkpoints(start, end, count=4)
    result = run_prequential(events, start_ts=start, end_ts=end, checkpoints=marks,
                             window_s=(end - start) / 4, settings=SMALL)
    s = result.summary()
    assert s["popularity"]["cases"] > 300
    assert s["popularity"]["hr@10"] < 0.5
    for method in ("als_full", "als_stream", "blend", "knn_cosine"):
        assert s[method]["hr@10"] > 0.8, method
    assert result.info["checkpoints"] == 4


def test_stream_batches_close_on_size_and_on_time() -> None:
    evs = [{"ts": t} for t in (0.0, 0.01, 0.02, 0.2, 0.21, 0.22, 0.23, 5.0)]
    sizes = [len(b) for b in stream_batches(evs, size=3, within_s=0.05)]
    assert sizes == [3, 3, 1, 1]
    assert sum(len(b) for b in backlog_batches(evs, size=3)) == len(evs)
    assert [len(b) for b in backlog_batches(evs, size=3)] == [3, 3, 2]


def test_holdout_split_is_seeded_and_respects_the_minimum() -> None:
    events = prepare_events(planted(timed=False), sort=False)
    a = holdout_split(events, fraction=0.2, seed=3)
    b = holdout_split(events, fraction=0.2, seed=3)
    assert a.test == b.test
    for user, items in a.test.items():
        train_items = {e["item_id"] for e in a.train if e["entity"] == user}
        assert not items & train_items
        assert len(items) == int(0.2 * (len(items) + len(train_items)))
    tiny = prepare_events([{"event_id": str(i), "type": "view", "user_id": "u",
                            "item_id": f"i{i}"} for i in range(4)], sort=False)
    assert holdout_split(tiny, fraction=0.5, seed=0).test == {}


def test_prepare_events_resolves_aliases_and_drops_duplicates() -> None:
    raw = [
        {"event_id": "1", "type": "view", "anonymous_id": "a", "item_id": "x", "ts": 2.0},
        {"event_id": "1", "type": "view", "anonymous_id": "a", "item_id": "x", "ts": 2.0},
        {"event_id": "2", "type": "identify", "anonymous_id": "a", "user_id": "u", "ts": 3.0},
        {"event_id": "3", "type": "view", "user_id": "v", "item_id": "y", "ts": 1.0},
    ]
    out = prepare_events(raw)
    assert [(e["entity"], e["item_id"]) for e in out] == [("v", "y"), ("u", "x")]


def test_checkpoints_and_synthetic_clock() -> None:
    assert checkpoints(0.0, 100.0, count=4) == [0.0, 25.0, 50.0, 75.0]
    assert checkpoints(5.0, 5.0, count=3) == []
    evs = [{"event_id": str(i), "entity": "u", "item_id": str(i)} for i in range(30)]
    clocked = synthetic_clock(evs, seed=1, events_per_second=10.0)
    assert [e["ts"] for e in clocked] == [float(i // 10) for i in range(30)]
    assert sorted(e["event_id"] for e in clocked) == sorted(e["event_id"] for e in evs)


def test_stable_keep_is_seeded_and_close_to_the_fraction() -> None:
    keep = stable_keep(7, 0.3)
    kept = sum(keep(f"user{i}") for i in range(5000))
    assert 1300 < kept < 1700
    assert keep("user1") == stable_keep(7, 0.3)("user1")
    assert all(stable_keep(0, 1.0)(f"u{i}") for i in range(10))


def test_sim_fold_in_list_is_the_fold_in_of_the_history() -> None:
    events = prepare_events(planted(seed=2, timed=True))
    sim = StreamSim(StreamConfig(list_size=10), AlsParams(factors=6, iterations=5))
    sim.load_backlog(events[:400])
    model = sim.model
    assert model is not None
    batch = events[400:401]
    sim.process(batch)
    entity = batch[0]["entity"]
    hist_items = {e["item_id"] for e in events[:401] if e["entity"] == entity}
    weights = {i: float(sum(1 for e in events[:401] if e["entity"] == entity
                            and e["item_id"] == i)) for i in hist_items}
    idx = model.item_map.indices(list(weights))
    w = np.array(list(weights.values()))
    known = idx >= 0
    x = fold_in(model.item_factors, rows=[(idx[known], w[known])],
                regularization=model.regularization, alpha=model.alpha)
    want, _ = top_n((x @ model.item_factors.T)[0], 10, exclude=idx[known])
    assert [i for i, _ in sim.personal(entity)] == model.item_map.ids_of(want)


def test_sim_sweep_reblends_active_entities_after_a_retrain() -> None:
    """After a retrain the replay, like the worker, rebuilds the blends of recently
    active entities on the new model instead of leaving them the retrain's plain list."""
    events = prepare_events(planted(seed=2, timed=True))
    cfg = StreamConfig(list_size=10, sweep_entities=1000, sweep_per_batch=1000)
    sim = StreamSim(cfg, AlsParams(factors=6, iterations=5))
    sim.load_backlog(events[:400])
    sim.process(events[400:420])
    active = {str(e["entity"]) for e in events[400:420]}
    assert active <= set(sim.blended)
    sim.retrain(float(events[420]["ts"]))
    assert not active & set(sim.blended)  # the retrain's plain lists replaced them
    sim.process(events[420:421])  # one event of someone; the sweep does the rest
    model = sim.model
    assert model is not None and active <= set(sim.blended)
    assert all(sim.lists[e][0] is model for e in active)
    assert sim.swept >= len(active - {str(events[420]["entity"])})


def test_retrained_model_is_deterministic() -> None:
    events = prepare_events(planted(seed=3, timed=True))[:300]
    a = fit_model(events, AlsParams(factors=4, iterations=3))
    b = fit_model(events, AlsParams(factors=4, iterations=3))
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.model.item_factors, b.model.item_factors)
    assert fit_model(events[:10], AlsParams(), min_events=50) is None


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_entity_filter_limits_cases(fraction: float) -> None:
    events = prepare_events(planted(seed=4, timed=True))
    start, end = events[600]["ts"], events[-1]["ts"] + 1
    settings = EvalSettings(stream=SMALL.stream, als=SMALL.als, methods=("popularity",))
    result = run_prequential(events, start_ts=start, end_ts=end, checkpoints=[start],
                             window_s=end - start, settings=settings,
                             keep=stable_keep(0, fraction))
    cases = result.summary()["popularity"]["cases"]
    assert (cases == 0) if fraction == 0.0 else (cases > 100)


def test_sim_ranks_the_worker_candidate_pool_and_scales_counts_like_the_worker() -> None:
    from recommender.abuse import AbusePolicy

    events = prepare_events(planted(seed=5, timed=True))

    def pool_rows(factors: np.ndarray, limit: int) -> np.ndarray:
        return np.arange(min(limit, factors.shape[0]), dtype=np.int64)  # first `limit` rows

    policy = AbusePolicy(window_s=3600.0, max_per_window=100, ramp_s=3600.0, min_trust=0.5)
    config = StreamConfig(list_size=20, foldin_candidates=7, abuse=policy,
                          foldin_neighbourhood=False)
    sim = StreamSim(config, AlsParams(factors=6, iterations=5), pool_rows)
    sim.load_backlog(events[:300])
    model = sim.model
    assert model is not None and model.pool is not None
    pool_ids = set(model.item_map.ids_of(model.pool))
    sim.process(events[300:301])
    entity = events[300]["entity"]
    listed = [i for i, _ in sim.personal(entity)]
    assert listed and set(listed) <= pool_ids
    # With the neighbourhood (the default), the entity's session and similar candidates
    # are ranked too: the list may leave the pool, but only towards those.
    wide = StreamSim(replace(config, foldin_neighbourhood=True),
                     AlsParams(factors=6, iterations=5), pool_rows)
    wide.load_backlog(events[:300])
    wide.process(events[300:301])
    near = {i for lst in (*wide.session_lists(entity, 100), *wide.similar_lists(entity, 100))
            for i, _ in lst}
    widened = {i for i, _ in wide.personal(entity)}
    assert widened - pool_ids and widened <= pool_ids | near
    # Histories here span < 1 h (trust < 1) and users repeat items within the window
    # (counted once), so the popular counts are well below one per event.
    total = float(sim.counts.popular.values.sum())
    assert 0 < total < 0.9 * 301
    fresh = StreamSim(StreamConfig(abuse=policy), AlsParams())
    fresh.process(events[:1], timed=False)
    assert float(fresh.counts.popular.values.sum()) == pytest.approx(0.5)  # a new id: min_trust


def test_live_model_diagnostic_scores_the_same_cases_and_finds_the_groups() -> None:
    """``als_live`` (opt-in) answers with the replay's own model and exact fold-in: it is
    scored on exactly the cases of the other methods and finds the planted groups."""
    events = prepare_events(planted(seed=1, timed=True))
    start, end = events[len(events) // 4]["ts"], events[-1]["ts"] + 1
    marks = checkpoints(start, end, count=4)
    settings = replace(SMALL, methods=("als_full", "als_stream", "als_live"))
    result = run_prequential(events, start_ts=start, end_ts=end, checkpoints=marks,
                             window_s=(end - start) / 4, settings=settings)
    s = result.summary()
    assert set(s) == {"als_full", "als_stream", "als_live"}
    assert s["als_live"]["hr@10"] > 0.8
    assert s["als_live"]["cases"] == s["als_full"]["cases"] == s["als_stream"]["cases"]
