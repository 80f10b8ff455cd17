"""CPU of the worker's list rebuild alone, on a synthetic model: a reproducible microbenchmark.

Times what ``stream.relister.Relister._entity_lists`` does between its Redis read and its
Redis write — the anchors, :func:`recommender.relist.relist` (fold-in, pool ranking, the
neighbourhood, the blend) and the JSON of every stored list — for shoppers whose every
event comes from a different shopper (nothing coalesces), on a model of realistic size
(``ITEMS`` items × ``FACTORS`` factors, the settings' candidate pool, blend depth and list
size). No servers: the candidate lists the worker would read from Redis are built once,
as the same objects per item, the way ``RedisWriter.blend_inputs`` hands them over.

Prints JSON: median CPU µs per rebuilt list (``time.process_time``) for calls of
``BATCH`` entities (the steady stream's batches) and of ``BIG`` entities, over
``REPEATS`` repeats. Environment: ``ITEMS`` (20000), ``FACTORS`` (128), ``SHOPPERS``
(200), ``BATCH`` (20), ``BIG`` (200), ``REPEATS`` (7), ``PROF`` a cProfile output path,
``MODEL=burst``: instead of the synthetic model and histories, an ALS model trained on
the burst bench's 100,000 events (``streamrec.bench.burst.burst_events``) and the
histories of ``SHOPPERS`` of its shoppers (real factors and histories cost ~1.4x more
per list than the synthetic ones).
Run from a checkout: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/bench_relist.py``;
from another checkout's directory with ``PYTHONPATH=.`` it times that version on the
same synthetic data (seeded), e.g. for a before/after.
"""

from __future__ import annotations

import cProfile
import hashlib
import json
import os
import statistics
import time
from typing import Any

import numpy as np

from core.limits import SESSION_ITEMS
from core.settings import Settings
from recommender.blend_many import RowList
from recommender.history import History
from recommender.idmap import IdMap
from recommender.model import FoldInModel, candidate_rows
from recommender.refresh import REASONS
from recommender.relist import anchors, relist
from stream.redis_writer import dumps_list
from stream.relister import RECENT_ITEMS, SIMILAR_ITEMS

ITEMS = int(os.environ.get("ITEMS", "20000"))
FACTORS = int(os.environ.get("FACTORS", "128"))
SHOPPERS = int(os.environ.get("SHOPPERS", "200"))
BATCH = int(os.environ.get("BATCH", "20"))
BIG = int(os.environ.get("BIG", "200"))
REPEATS = int(os.environ.get("REPEATS", "7"))
TYPES = ["view"] * 8 + ["add_to_cart", "purchase"]


def synthetic_model(rng: np.random.Generator, settings: Settings) -> FoldInModel:
    """Item factors with a popularity-like spread of norms, as ALS gives them."""
    factors = rng.normal(0.0, 0.1, size=(ITEMS, FACTORS)).astype(np.float32)
    factors *= rng.lognormal(0.0, 0.6, size=(ITEMS, 1)).astype(np.float32)
    return FoldInModel.build(
        "bench", IdMap(f"i{j}" for j in range(ITEMS)), factors,
        regularization=settings.als_regularization, alpha=settings.als_alpha,
        pool=candidate_rows(factors, settings.foldin_candidates))


def synthetic_histories(rng: np.random.Generator) -> list[History]:
    """Shoppers with 1–40 events each on Zipf-popular items, a minute apart at most."""
    out = []
    for s in range(SHOPPERS):
        size = int(min(40, rng.geometric(0.12)))
        items = np.minimum(rng.zipf(1.3, size=size) - 1, ITEMS - 1)
        ts = 1.7e9 + np.cumsum(rng.uniform(1.0, 60.0, size=size))
        out.append(History([(f"e{s}-{j}", f"i{int(items[j])}", TYPES[j % len(TYPES)],
                             float(ts[j]), float(ts[j])) for j in range(size)]))
    return out


class Candidates:
    """The per-item candidate lists, one object per item (as one batch's Redis read)."""

    def __init__(self, rng: np.random.Generator, depth: int) -> None:
        self.rng = rng
        self.depth = depth
        self.cooc: dict[str, list[tuple[str, float]]] = {}
        self.similar: dict[str, RowList] = {}
        head = [(f"i{j}", float(1000 - j)) for j in range(depth)]
        self.trending = head[::-1]
        self.popular = head

    def session(self, item: str) -> list[tuple[str, float]]:
        """Co-occurrence partners of ``item``."""
        if item not in self.cooc:
            partners = np.minimum(self.rng.zipf(1.3, size=self.depth) - 1, ITEMS - 1)
            self.cooc[item] = [(f"i{int(p)}", float(self.depth - j))
                               for j, p in enumerate(partners)]
        return self.cooc[item]

    def similar_of(self, item: str) -> RowList:
        """Model neighbours of ``item`` as model rows."""
        if item not in self.similar:
            rows = self.rng.choice(ITEMS, size=self.depth, replace=False).astype(np.int64)
            self.similar[item] = RowList(rows, np.linspace(0.9, 0.5, self.depth))
        return self.similar[item]


def rebuild(model: FoldInModel, histories: list[History], cands: Candidates,
            settings: Settings) -> list[tuple[int, bytes]]:
    """What the worker computes for a batch of refreshed entities (no I/O)."""
    recent = [h.recent_items(RECENT_ITEMS) for h in histories]
    anchor = [anchors(r, model, session_items=SESSION_ITEMS, similar_items=SIMILAR_ITEMS)
              for r in recent]
    lists = relist(
        model, histories, recent,
        session=[[cands.session(i) for i in a.session] for a in anchor],
        similar=[[cands.similar_of(i) for i in a.similar] for a in anchor],
        trending=cands.trending, popular=cands.popular, n=settings.list_size)
    now = time.time()
    return [(j, dumps_list(model.version, out.blended.ids, out.blended.scores, ts=now,
                           reasons=[REASONS[s] for s in out.blended.sources]))
            for j, out in enumerate(lists) if out.blended.ids]


def timed(model: FoldInModel, histories: list[History], cands: Candidates,
          settings: Settings, size: int) -> float:
    """Median CPU µs per list over ``REPEATS`` passes over every shopper in calls of
    ``size``."""
    per: list[float] = []
    for _ in range(REPEATS):
        start = time.process_time()
        for at in range(0, len(histories), size):
            rebuild(model, histories[at:at + size], cands, settings)
        per.append((time.process_time() - start) / len(histories) * 1e6)
    return statistics.median(per)


def burst_model(settings: Settings) -> tuple[FoldInModel, list[History]]:
    """An ALS model trained on the burst bench's events, and some of its shoppers'
    histories (``MODEL=burst``)."""
    from recommender.als import train_als
    from recommender.interactions import build_matrix
    from streamrec.bench.burst import burst_events

    global ITEMS
    events = burst_events(100_000, 20_000, ITEMS, "relist")
    data = build_matrix(events)
    fit = train_als(data.matrix, factors=FACTORS, iterations=settings.als_iterations,
                    regularization=settings.als_regularization, alpha=settings.als_alpha,
                    num_threads=0)
    factors = np.ascontiguousarray(fit.item_factors, dtype=np.float32)
    model = FoldInModel.build(
        "burst", data.item_map, factors, regularization=settings.als_regularization,
        alpha=settings.als_alpha, pool=candidate_rows(factors, settings.foldin_candidates))
    ITEMS = len(data.item_map)  # the candidate lists draw from the model's items
    by_shopper: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_shopper.setdefault(event["user_id"], []).append(event)
    histories = [History([(e["event_id"], e["item_id"], e["type"], 1.7e9 + j, 1.7e9 + j)
                          for j, e in enumerate(evs)])
                 for evs in list(by_shopper.values())[:SHOPPERS]]
    return model, histories


def main() -> None:
    """Build the synthetic data, check the lists are stable, time, print JSON."""
    settings = Settings()
    rng = np.random.default_rng(7)
    if os.environ.get("MODEL") == "burst":
        model, histories = burst_model(settings)
    else:
        model = synthetic_model(rng, settings)
        histories = synthetic_histories(rng)
    cands = Candidates(rng, settings.blend_depth)
    first = rebuild(model, histories, cands, settings)  # warm: candidate lists, caches
    digest = hashlib.sha1(b"".join(body.split(b'"ts"')[0] for _, body in first))
    result: dict[str, Any] = {
        "model": os.environ.get("MODEL") or "synthetic",
        "items": ITEMS, "factors": FACTORS, "shoppers": SHOPPERS, "repeats": REPEATS,
        "lists": len(first), "lists_digest": digest.hexdigest()[:12],
        f"us_per_list_batch_{BATCH}": round(timed(model, histories, cands, settings, BATCH), 1),
        f"us_per_list_batch_{BIG}": round(timed(model, histories, cands, settings, BIG), 1),
    }
    if os.environ.get("PROF"):
        prof = cProfile.Profile()
        prof.enable()
        for at in range(0, len(histories), BATCH):
            rebuild(model, histories[at:at + BATCH], cands, settings)
        prof.disable()
        prof.dump_stats(os.environ["PROF"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
