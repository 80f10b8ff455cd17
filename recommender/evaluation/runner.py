"""Run every method on one protocol and score it.

Two drivers share the scoring code:

:func:`run_prequential`
    test-then-learn in time order (also used for next-click on sessions, with the session
    as the entity). A backlog before the evaluation period is loaded and trained on, as a
    deployment is bootstrapped; the period is then replayed batch by batch exactly as the
    worker would see it. At each checkpoint the batch-trained baselines (item-kNN,
    full-retrain ALS) are refitted on everything so far; every event inside the
    checkpoint's window is a test case *before* it is learned: its entity must have some
    history and the item must be new to the entity. Each method answers from the state it
    has at that moment: the streaming methods from the state after the previous batch, the
    baselines from their checkpoint fit queried with the entity's history so far.
:func:`run_holdout`
    for data without time: the training events are streamed through the worker (seeded
    order, synthetic clock), the baselines are fitted on the same events, and every
    entity's held-out items are the relevant set of one case.

Every method gets the same exclusion: items the entity already interacted with are never
recommended (a test item is new to its entity by construction).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recommender.blend import DEFAULT_WEIGHTS, BlendWeights, blend, merge_recent
from recommender.evaluation.baselines import (
    KnnModel,
    Profiles,
    als_recommend,
    filtered,
    fit_knn,
)
from recommender.evaluation.events import Event, stream_batches
from recommender.evaluation.worker_sim import (
    AlsParams,
    PoolRows,
    StreamConfig,
    StreamSim,
    TrainedModel,
    fit_model,
)
from recommender.interactions import build_matrix
from recommender.metrics import catalog_coverage, hit_rate, ndcg, recall, summarize
from recommender.weights import EVENT_WEIGHTS

#: Methods in table order.
METHODS: tuple[str, ...] = (
    "popularity", "knn_cosine", "knn_bm25", "als_full", "als_stream", "blend",
)

#: Opt-in diagnostic methods (``--methods``), not in the default table:
#: ``als_live`` is the replayed worker's *current* model with each entity's history
#: folded in exactly at query time and every item ranked. Against ``als_full`` it
#: isolates model age (same answer path, older model); against ``als_stream`` it
#: isolates what serving stored lists costs (same model, lists from the entity's last
#: refresh or the last retrain, ranked over pool + neighbourhood).
DIAGNOSTIC: tuple[str, ...] = ("als_live",)

#: Every method ``EvalSettings.methods`` may name.
KNOWN_METHODS: tuple[str, ...] = METHODS + DIAGNOSTIC

#: Methods that need the replayed worker state.
STREAMING: frozenset[str] = frozenset({"popularity", "als_stream", "blend", "als_live"})

Progress = Callable[[int], None]
Scored = tuple[str, float]


@dataclass(frozen=True)
class EvalSettings:
    """Everything a run needs besides the data.

    Attributes
    ----------
    stream
        Worker knobs (batching, cadence, list sizes).
    als
        ALS hyper-parameters (retrains and the full-retrain baseline).
    blend
        Blend weights.
    knn_neighbours
        ``K`` of the item-kNN baselines.
    depth
        Candidates read per source for the blend (the API's page size).
    k
        Cut-off of HR, NDCG and coverage.
    k_recall
        Cut-off of recall.
    methods
        Which methods to run (a subset of :data:`KNOWN_METHODS`).
    capture
        Keep every case's blend inputs, for tuning the blend on validation data.
    pool_rows
        The worker's choice of the items refolded users are ranked against
        (``stream.live_model.candidate_rows``); ``None`` ranks all items.
    """

    stream: StreamConfig = field(default_factory=StreamConfig)
    als: AlsParams = field(default_factory=AlsParams)
    blend: BlendWeights = DEFAULT_WEIGHTS
    knn_neighbours: int = 100
    depth: int = 100
    k: int = 10
    k_recall: int = 20
    methods: tuple[str, ...] = METHODS
    capture: bool = False
    pool_rows: PoolRows | None = None


@dataclass
class Captured:
    """The blend's inputs for one query (kept for tuning).

    ``session`` and ``similar`` hold the per-recent-item lists before merging, so the
    merge's recency decay can be tuned too.
    """

    personal: list[Scored]
    session: list[list[Scored]]
    similar: list[list[Scored]]
    trending: list[Scored]
    popular: list[Scored]
    exclude: set[str]
    history_size: int
    relevant: list[set[str]] = field(default_factory=list)

    def blend_inputs(self, weights: BlendWeights) -> dict[str, Any]:
        """Keyword arguments of :func:`recommender.blend.blend` for ``weights``."""
        return blend_inputs(self.personal, self.session, self.similar, self.trending,
                            self.popular, weights=weights, history_size=self.history_size)


def blend_inputs(personal: list[Scored], session: list[list[Scored]],
                 similar: list[list[Scored]], trending: list[Scored], popular: list[Scored],
                 *, weights: BlendWeights, history_size: int) -> dict[str, Any]:
    """Merge the per-item lists and name every blend input (as the API does)."""
    return {
        "personal": personal,
        "session": merge_recent(session, recency=weights.recency),
        "similar": merge_recent(similar, recency=weights.recency),
        "trending": trending,
        "popular": popular,
        "history_size": history_size,
    }


@dataclass
class Tally:
    """Per-case metric values and served lists of one method."""

    hr: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    shown: list[list[str]] = field(default_factory=list)

    def add(self, ranked: Sequence[str], relevant: set[str], *, k: int, k_recall: int) -> None:
        """Score one case."""
        self.hr.append(hit_rate(ranked, relevant, k))
        self.ndcg.append(ndcg(ranked, relevant, k))
        self.recall.append(recall(ranked, relevant, k_recall))


@dataclass
class RunResult:
    """What one protocol run produced.

    Attributes
    ----------
    tallies
        Per method, the per-case values.
    catalog_size
        Items in the data the run saw (coverage denominator).
    costs
        Per method, update cost details (seconds).
    info
        Protocol facts (events, cases, checkpoints, retrains ...).
    captured
        Blend inputs per query when :attr:`EvalSettings.capture` was on.
    """

    tallies: dict[str, Tally]
    catalog_size: int
    costs: dict[str, dict[str, float]]
    info: dict[str, Any]
    captured: list[Captured] = field(default_factory=list)

    def summary(self, k: int = 10, k_recall: int = 20) -> dict[str, dict[str, Any]]:
        """Means, standard errors and coverage per method."""
        out: dict[str, dict[str, Any]] = {}
        for name, tally in self.tallies.items():
            hr, nd, rc = summarize(tally.hr), summarize(tally.ndcg), summarize(tally.recall)
            out[name] = {
                f"hr@{k}": hr.mean, f"hr@{k}_se": hr.stderr,
                f"ndcg@{k}": nd.mean, f"ndcg@{k}_se": nd.stderr,
                f"recall@{k_recall}": rc.mean, f"recall@{k_recall}_se": rc.stderr,
                f"coverage@{k}": catalog_coverage(tally.shown, self.catalog_size, k),
                "cases": hr.n,
                **self.costs.get(name, {}),
            }
        return out


class _Baselines:
    """Checkpoint-fitted baselines."""

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.knn: dict[str, KnnModel] = {}
        self.als: TrainedModel | None = None
        self.fits: dict[str, list[float]] = {"knn_cosine": [], "knn_bm25": [], "als_full": []}

    def refit(self, log: Sequence[Event], sim: StreamSim) -> None:
        s = self.settings
        hl = s.als.decay_half_life_s
        started = time.perf_counter()
        data = build_matrix(log, half_life_s=hl)
        build_s = time.perf_counter() - started
        for kind in ("cosine", "bm25"):
            name = f"knn_{kind}"
            if name in s.methods:
                model = fit_knn(data, kind, neighbours=s.knn_neighbours)
                if model is not None:
                    self.knn[name] = model
                    self.fits[name].append(model.seconds + build_s)
        if "als_full" in s.methods:
            live = sim.model
            if live is not None and sim.trained_log_len == len(log):
                # The worker just retrained on exactly these events: same model (seeded).
                self.als = live
            else:
                fitted = fit_model(data, s.als, min_events=1)
                if fitted is not None:
                    fitted.seconds += build_s
                    self.als = fitted
            if self.als is not None:
                self.fits["als_full"].append(self.als.seconds)


def _answer(settings: EvalSettings, sim: StreamSim, base: _Baselines, profiles: Profiles,
            entities: Sequence[str], capture: bool) -> tuple[dict[str, list[list[str]]],
                                                             list[Captured | None]]:
    """Every method's top-``k_recall`` for each entity (known items excluded)."""
    n = max(settings.k, settings.k_recall)
    depth = settings.depth
    methods = settings.methods
    known = [profiles.known(e) for e in entities]
    out: dict[str, list[list[str]]] = {}
    popular = sim.popular_top(depth + max((len(k) for k in known), default=0))
    if "popularity" in methods:
        out["popularity"] = [filtered(popular, kn, n) for kn in known]
    for name in ("knn_cosine", "knn_bm25"):
        if name in methods:
            model = base.knn.get(name)
            out[name] = model.recommend(profiles, entities, n) if model else [[]] * len(entities)
    if "als_full" in methods:
        out["als_full"] = (als_recommend(base.als, profiles, entities, n) if base.als
                           else [[] for _ in entities])
    if "als_live" in methods:
        out["als_live"] = (als_recommend(sim.model, profiles, entities, n) if sim.model
                           else [[] for _ in entities])
    personal = [sim.personal(e) for e in entities]
    if "als_stream" in methods:
        out["als_stream"] = [filtered(p, kn, n) for p, kn in zip(personal, known, strict=True)]
    captured: list[Captured | None] = [None] * len(entities)
    if "blend" in methods:  # what the API serves: the worker's stored blend, then fallbacks
        out["blend"] = [filtered(sim.served(e), kn, n)
                        for e, kn in zip(entities, known, strict=True)]
    if capture:  # each source's candidates at query time, for tuning the fusion weights
        trending = sim.trending_top(depth)
        head = popular[:depth]
        for j, entity in enumerate(entities):
            captured[j] = Captured(
                personal=personal[j][:depth],
                session=sim.session_lists(entity, depth),
                similar=sim.similar_lists(entity, depth),
                trending=trending,
                popular=head,
                exclude=set(known[j]),
                history_size=len(sim.recent_items(entity)),
            )
    return out, captured


def _score(settings: EvalSettings, tallies: dict[str, Tally],
           answers: Mapping[str, list[list[str]]],
           cases: Sequence[tuple[int, set[str]]]) -> None:
    """Add one case per ``(entity position, relevant set)``; lists count once for coverage."""
    for name, lists in answers.items():
        tally = tallies[name]
        for pos, relevant in cases:
            tally.add(lists[pos], relevant, k=settings.k, k_recall=settings.k_recall)
        tally.shown.extend(lst[: settings.k] for lst in lists)


def _costs(settings: EvalSettings, sim: StreamSim, base: _Baselines,
           events_per_interval: float) -> dict[str, dict[str, float]]:
    """Update cost per event of each method (see docs/quality.md for the definitions)."""
    per = max(sim.updated_events, 1)
    fold = sim.update_seconds / per
    retrain = (sim.retrain_seconds / sim.retrains) if sim.retrains else 0.0
    costs: dict[str, dict[str, float]] = {
        "popularity": {"update_s_per_event": sim.count_seconds / per},
        "als_stream": {"update_s_per_event": fold, "retrains": float(sim.retrains),
                       "retrain_s_mean": retrain,
                       "retrain_s_per_event": retrain / max(events_per_interval, 1.0)},
    }
    costs["blend"] = dict(costs["als_stream"])
    for name, fits in base.fits.items():
        if fits:
            mean = float(np.mean(fits))
            costs[name] = {"update_s_per_event": mean / max(events_per_interval, 1.0),
                           "fit_s_mean": mean, "fits": float(len(fits))}
    return costs


def _novel_targets(batch: Sequence[Event], profiles: Profiles,
                   keep: Callable[[str], bool] | None) -> dict[str, set[str]]:
    """Items new to their entity, of entities with history, in one batch."""
    targets: dict[str, set[str]] = {}
    for ev in batch:
        if EVENT_WEIGHTS.get(str(ev["type"]), 0.0) <= 0.0:
            continue
        entity, item = str(ev["entity"]), str(ev["item_id"])
        known = profiles.known(entity)
        if not known or item in known or (keep is not None and not keep(entity)):
            continue
        targets.setdefault(entity, set()).add(item)
    return targets


def _learn(batch: Sequence[Event], sim: StreamSim, profiles: Profiles, *, simulate: bool,
           progress: Progress | None) -> None:
    """After a batch was scored: feed it to the worker replay (or only log it when no
    streaming method is evaluated) and to the entity profiles, and report progress."""
    if simulate:
        sim.process(batch)
    else:
        sim.record(batch)
    for ev in batch:
        profiles.add(ev)
    if progress:
        progress(len(batch))


def run_prequential(
    events: Sequence[Event],
    *,
    start_ts: float,
    end_ts: float,
    checkpoints: Sequence[float],
    window_s: float,
    settings: EvalSettings,
    keep: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Test-then-learn over ``[start_ts, end_ts)`` with windows after each checkpoint.

    Parameters
    ----------
    events
        Prepared events sorted by time (everything before ``start_ts`` is the backlog,
        everything from ``end_ts`` on is ignored).
    start_ts, end_ts
        The evaluation period.
    checkpoints
        Increasing times in the period; the baselines are refitted at each, and events in
        ``[checkpoint, checkpoint + window_s)`` are test cases.
    window_s
        Length of each test window.
    settings
        Methods and knobs.
    keep
        Optional entity filter (seeded subsample of who is evaluated; everyone is learned).
    progress
        Called with the number of events processed after each batch.

    Returns
    -------
    RunResult
        Per-method tallies, costs and protocol facts. Each case is one event: the
        relevant set is ``{item}``.
    """
    backlog = [e for e in events if e["ts"] < start_ts]
    stream = [e for e in events if start_ts <= e["ts"] < end_ts]
    sim = StreamSim(settings.stream, settings.als, settings.pool_rows)
    profiles = Profiles(settings.als.decay_half_life_s)
    for ev in backlog:
        profiles.add(ev)
    simulate = settings.capture or any(m in settings.methods for m in STREAMING)
    if simulate:
        sim.load_backlog(backlog)
    else:
        sim.record(backlog)
    if progress:
        progress(len(backlog))
    base = _Baselines(settings)
    tallies = {m: Tally() for m in settings.methods}
    captured: list[Captured] = []
    marks = sorted(checkpoints)
    next_mark = 0
    window_end = -np.inf
    n_cases = 0
    for batch in stream_batches(stream, size=settings.stream.batch_size,
                                within_s=settings.stream.batch_within_s):
        now = float(batch[0]["ts"])
        if simulate:
            sim.maybe_retrain(now)
        if next_mark < len(marks) and now >= marks[next_mark]:
            while next_mark < len(marks) and now >= marks[next_mark]:
                window_end = marks[next_mark] + window_s
                next_mark += 1
            base.refit(sim.log, sim)
        if now < window_end:
            targets = _novel_targets(batch, profiles, keep)
            if targets:
                entities = list(targets)
                answers, caps = _answer(settings, sim, base, profiles, entities,
                                        settings.capture)
                cases = [(j, {item}) for j, e in enumerate(entities) for item in targets[e]]
                _score(settings, tallies, answers, cases)
                n_cases += len(cases)
                for j, cap in enumerate(caps):
                    if cap is not None:
                        cap.relevant = [{item} for item in targets[entities[j]]]
                        captured.append(cap)
        _learn(batch, sim, profiles, simulate=simulate, progress=progress)
    span = max(end_ts - start_ts, 1e-9)
    rate = len(stream) / span
    catalog = len({e["item_id"] for e in backlog} | {e["item_id"] for e in stream})
    info = {
        "protocol": "prequential", "backlog_events": len(backlog), "stream_events": len(stream),
        "checkpoints": len(marks), "window_s": window_s, "cases": n_cases,
        "retrains": sim.retrains, "swept": sim.swept, "events_per_retrain_interval": rate *
        settings.stream.retrain_interval_s,
    }
    costs = _costs(settings, sim, base, rate * settings.stream.retrain_interval_s)
    return RunResult(tallies, catalog, costs, info, captured)


def run_holdout(
    train: Sequence[Event],
    test: Mapping[str, set[str]],
    *,
    settings: EvalSettings,
    events_per_second: float,
    progress: Progress | None = None,
    chunk: int = 256,
) -> RunResult:
    """Stream the training events through the worker, then score every test entity once.

    Parameters
    ----------
    train
        Prepared training events in replay order, with synthetic ``ts`` (see
        :func:`recommender.evaluation.protocols.synthetic_clock`).
    test
        Held-out items per entity.
    settings
        Methods and knobs.
    events_per_second
        The synthetic clock's rate (for cost amortisation).
    progress
        Called with the number of events processed after each batch.
    chunk
        Entities answered per vectorised call.

    Returns
    -------
    RunResult
        One case per entity with held-out items.

    Notes
    -----
    The synthetic clock orders the replay but is not event time, so recency decay is off
    in this protocol whatever the settings say.
    """
    settings = replace(settings, als=replace(settings.als, decay_half_life_s=math.inf))
    sim = StreamSim(settings.stream, settings.als, settings.pool_rows)
    profiles = Profiles(settings.als.decay_half_life_s)
    simulate = settings.capture or any(m in settings.methods for m in STREAMING)
    for batch in stream_batches(train, size=settings.stream.batch_size,
                                within_s=settings.stream.batch_within_s):
        if simulate:
            sim.maybe_retrain(float(batch[0]["ts"]))
        _learn(batch, sim, profiles, simulate=simulate, progress=progress)
    if simulate:
        sim.idle()  # the deployment is idle when it is asked: its sweep has finished
    base = _Baselines(settings)
    started = time.perf_counter()
    base.refit(sim.log, sim)
    tallies = {m: Tally() for m in settings.methods}
    captured: list[Captured] = []
    entities = [e for e in test if test[e] and profiles.known(e)]
    for start in range(0, len(entities), chunk):
        group = entities[start : start + chunk]
        answers, caps = _answer(settings, sim, base, profiles, group, settings.capture)
        cases = [(j, set(test[e]) - profiles.known(e)) for j, e in enumerate(group)]
        _score(settings, tallies, answers, cases)
        for j, cap in enumerate(caps):
            if cap is not None:
                cap.relevant = [cases[j][1]]
                captured.append(cap)
    catalog = len({e["item_id"] for e in train} | {i for items in test.values() for i in items})
    interval = events_per_second * settings.stream.retrain_interval_s
    info = {
        "protocol": "holdout", "train_events": len(train), "cases": len(entities),
        "retrains": sim.retrains, "swept": sim.swept, "events_per_retrain_interval": interval,
        "scoring_s": time.perf_counter() - started,
    }
    return RunResult(tallies, catalog, _costs(settings, sim, base, interval), info, captured)


def blend_ndcg(captured: Iterable[Captured], weights: BlendWeights, *, k: int = 10) -> float:
    """Mean NDCG@k of the blend with ``weights`` over captured queries (for tuning)."""
    values: list[float] = []
    for cap in captured:
        ranked = [b.item_id for b in blend(n=k, exclude=cap.exclude, weights=weights,
                                           **cap.blend_inputs(weights))]
        values.extend(ndcg(ranked, rel, k) for rel in cap.relevant)
    return float(np.mean(values)) if values else 0.0


def stable_keep(seed: int, fraction: float) -> Callable[[Hashable], bool]:
    """A seeded, order-independent entity subsample: keep ``fraction`` of all entities."""
    if fraction >= 1.0:
        return lambda _e: True

    def keep(entity: Hashable) -> bool:
        digest = hashlib.blake2b(f"{seed}:{entity}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < fraction

    return keep
