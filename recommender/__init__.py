"""Pure modelling for streamrec: ids, event weights, histories, ALS, fold-in, top-N,
trending and co-occurrence.

Arrays and sparse matrices in, arrays out: no I/O, no settings, no environment. The
worker (``stream/``) and the retrain job pass every parameter explicitly.
"""

from recommender.als import AlsModel, confidence_matrix, train_als
from recommender.cooccurrence import POSITION_DECAY, cooccurrence_pairs, normalize_cooc
from recommender.foldin import fold_in, gramian, row_from_weights
from recommender.history import Entry, History
from recommender.idmap import IdMap
from recommender.interactions import Interactions, build_matrix, entity_of, resolve_entities
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
)

__all__ = [
    "EVENT_WEIGHTS",
    "POPULARITY_WEIGHTS",
    "POSITION_DECAY",
    "REBASE_EXPONENT",
    "AlsModel",
    "Entry",
    "History",
    "IdMap",
    "Interactions",
    "build_matrix",
    "confidence_matrix",
    "cooccurrence_pairs",
    "decayed_score",
    "entity_of",
    "event_weight",
    "fold_in",
    "forward_decay",
    "gramian",
    "needs_rebase",
    "normalize_cooc",
    "popularity_weight",
    "rebase_factor",
    "recommend_batch",
    "resolve_entities",
    "row_from_weights",
    "similar_items",
    "top_n",
    "train_als",
]
