"""Pure modelling for streamrec: ids, event weights, histories, ALS, fold-in, top-N,
trending, co-occurrence, the serving blend and the ranking metrics.

Arrays and sparse matrices in, arrays out: no I/O, no settings, no environment. The
worker (``stream/``) and the retrain job pass every parameter explicitly.

Names are loaded lazily (PEP 562), so a light consumer such as the API can import
:mod:`recommender.blend` without pulling in ``implicit``, ``numpy`` or ``scipy``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recommender.als import AlsModel, confidence_matrix, train_als
    from recommender.blend import BlendWeights, blend, merge_recent, merge_summed
    from recommender.cooccurrence import POSITION_DECAY, cooccurrence_pairs, normalize_cooc
    from recommender.foldin import fold_in, gramian, row_from_weights
    from recommender.history import Entry, History
    from recommender.idmap import IdMap
    from recommender.interactions import (
        Interactions,
        build_matrix,
        entity_of,
        resolve_entities,
    )
    from recommender.model import FoldInModel, candidate_rows
    from recommender.topn import recommend_batch, similar_items, top_n
    from recommender.trending import (
        REBASE_EXPONENT,
        decayed_score,
        forward_decay,
        needs_rebase,
        rebase_factor,
    )
    from recommender.weights import (
        EVENT_WEIGHTS,
        POPULARITY_WEIGHTS,
        event_weight,
        popularity_weight,
        recency_decay,
    )

_WHERE: dict[str, str] = {
    "AlsModel": "als", "confidence_matrix": "als", "train_als": "als",
    "BlendWeights": "blend", "blend": "blend", "merge_recent": "blend",
    "merge_summed": "blend",
    "POSITION_DECAY": "cooccurrence", "cooccurrence_pairs": "cooccurrence",
    "normalize_cooc": "cooccurrence",
    "fold_in": "foldin", "gramian": "foldin", "row_from_weights": "foldin",
    "Entry": "history", "History": "history",
    "IdMap": "idmap",
    "FoldInModel": "model", "candidate_rows": "model",
    "Interactions": "interactions", "build_matrix": "interactions",
    "entity_of": "interactions", "resolve_entities": "interactions",
    "recommend_batch": "topn", "similar_items": "topn", "top_n": "topn",
    "REBASE_EXPONENT": "trending", "decayed_score": "trending",
    "forward_decay": "trending", "needs_rebase": "trending", "rebase_factor": "trending",
    "EVENT_WEIGHTS": "weights", "POPULARITY_WEIGHTS": "weights", "event_weight": "weights",
    "popularity_weight": "weights", "recency_decay": "weights",
}

__all__ = [
    "AlsModel",
    "BlendWeights",
    "EVENT_WEIGHTS",
    "Entry",
    "FoldInModel",
    "History",
    "IdMap",
    "Interactions",
    "POPULARITY_WEIGHTS",
    "POSITION_DECAY",
    "REBASE_EXPONENT",
    "blend",
    "build_matrix",
    "candidate_rows",
    "confidence_matrix",
    "cooccurrence_pairs",
    "decayed_score",
    "entity_of",
    "event_weight",
    "fold_in",
    "forward_decay",
    "gramian",
    "merge_recent",
    "merge_summed",
    "needs_rebase",
    "normalize_cooc",
    "popularity_weight",
    "rebase_factor",
    "recency_decay",
    "recommend_batch",
    "resolve_entities",
    "row_from_weights",
    "similar_items",
    "top_n",
    "train_als",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'recommender' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"recommender.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
