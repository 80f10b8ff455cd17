"""The evaluated methods: their names, the settings of a run, how each answers a query
and what each costs per event.

The streaming methods answer from the worker replay
(:class:`~recommender.evaluation.worker_sim.StreamSim`); the batch baselines from
:class:`Baselines`, refitted at checkpoints. Every method gets the same exclusion: items
the entity already interacted with are never recommended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.blend import DEFAULT_WEIGHTS, BlendWeights
from recommender.evaluation.baselines import (
    KnnModel,
    Profiles,
    als_recommend,
    filtered,
    fit_knn,
)
from recommender.evaluation.events import Event
from recommender.evaluation.replay_model import AlsParams, PoolRows, Retrain, fit_model
from recommender.evaluation.scoring import Captured
from recommender.evaluation.worker_sim import StreamConfig, StreamSim
from recommender.interactions import build_matrix
from recommender.model import candidate_rows

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
        (:func:`recommender.model.candidate_rows`); ``None`` ranks all items.
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
    pool_rows: PoolRows | None = candidate_rows


class Baselines:
    """The batch-fitted comparison methods (item-kNN, full-retrain ALS), refitted at
    every checkpoint."""

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.knn: dict[str, KnnModel] = {}
        self.als: Retrain | None = None
        self.fits: dict[str, list[float]] = {"knn_cosine": [], "knn_bm25": [], "als_full": []}

    def refit(self, log: Sequence[Event], sim: StreamSim) -> None:
        """Fit every selected baseline on ``log`` (the full-retrain ALS reuses the
        replay's retrain when it was trained on exactly these events)."""
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
            live = sim.retrained
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


def answer(settings: EvalSettings, sim: StreamSim, base: Baselines, profiles: Profiles,
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
        out["als_full"] = (als_recommend(base.als.model, profiles, entities, n) if base.als
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


def costs(settings: EvalSettings, sim: StreamSim, base: Baselines,
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
