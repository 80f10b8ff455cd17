"""The lists of refreshed entities: the second half of the batch step.

For every entity whose history changed in a batch (and every entity the refresh sweep
re-lists for a new model), the worker stores a blended list: its fold-in list fused with
the session, similar, trending and popular candidates. The worker reads those candidates
from Redis and the evaluator's replay from its own containers; both choose *which* lists
with :func:`anchors` and compute the lists with :func:`relist`, so both store the same.

Pure: plain containers and numpy arrays in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recommender.blend_many import BlendedList, ItemCodes, ScoredList, blend_many
from recommender.history import History
from recommender.model import FoldInModel
from recommender.refresh import refold_rows

__all__ = ["Anchors", "EntityLists", "anchors", "neighbour_rows", "relist"]

Scored = tuple[str, float]
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Anchors:
    """The recent items of one entity whose per-item lists feed its blend."""

    #: Newest first: their co-occurrence lists make the ``session`` source.
    session: list[str]
    #: The newest the model knows: their model-neighbour lists make ``similar``.
    similar: list[str]


def anchors(recent: Sequence[str], model: FoldInModel, *, session_items: int,
            similar_items: int) -> Anchors:
    """Which per-item lists an entity's blend reads, from its recent items (newest
    first): the first ``session_items``, and the first ``similar_items`` the model
    knows."""
    known = model.item_map
    return Anchors(list(recent[:session_items]),
                   [i for i in recent if i in known][:similar_items])


@dataclass(frozen=True)
class EntityLists:
    """One entity's new lists."""

    #: Its fold-in list as model rows and scores, best first; None when the model
    #: knows none of its items (no personal list then).
    personal: tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]] | None
    #: The blended list that is stored and served.
    blended: BlendedList


def neighbour_rows(codes: ItemCodes, session: Sequence[Sequence[Sequence[Scored]]],
                   similar: Sequence[Sequence[ScoredList]]) -> list[npt.NDArray[np.int64]]:
    """Per entity, the model rows of the items on its session and similar lists (the
    neighbourhood ranked besides the candidate pool). Entities share recent items, so
    each list is coded once (by ``codes``, which the blend then reuses) rather than
    once per entity."""
    per_entity = [(*s, *m) for s, m in zip(session, similar, strict=True)]
    codes.code_all(lst for lists in per_entity for lst in lists)
    parts = [codes.scored(lst)[0] for lists in per_entity for lst in lists]
    if not parts:
        return [_NO_ROWS for _ in per_entity]
    flat = np.concatenate(parts)  # every entity's codes at once, then cut per entity
    sizes = [sum(len(lst) for lst in lists) for lists in per_entity]
    if codes.extra:  # ids the model does not know have no row
        known = flat < codes.size
        owner = np.repeat(np.arange(len(per_entity)), sizes)
        sizes = np.bincount(owner[known], minlength=len(per_entity)).tolist()
        flat = flat[known]
    return np.split(flat, np.cumsum(sizes)[:-1].tolist())


def relist(
    model: FoldInModel,
    histories: Sequence[History],
    recent: Sequence[Sequence[str]],
    *,
    session: Sequence[Sequence[Sequence[Scored]]],
    similar: Sequence[Sequence[ScoredList]],
    trending: Sequence[Scored],
    popular: Sequence[Scored],
    n: int,
    neighbourhood: bool = True,
    half_life_s: float | None = None,
) -> list[EntityLists]:
    """Fold entities into ``model`` and blend their lists.

    Parameters
    ----------
    model
        The live model.
    histories, recent
        Per entity, its history and its stored recent items (newest first).
    session, similar
        Per entity, the lists of its :func:`anchors` (co-occurrence partners, model
        neighbours; ``(id, score)`` pairs or :class:`~recommender.blend_many.RowList`).
        Hand the same list object to every entity sharing an anchor: it is coded once.
    trending, popular
        Heads of the global lists.
    n
        List length.
    neighbourhood
        Also rank each entity's session and similar candidates besides the model's
        candidate pool (the worker does; off only in evaluation ablations).
    half_life_s
        Recency decay of the history weights (None: the production default).

    Returns
    -------
    list of EntityLists
        One per entity, in input order (:func:`recommender.refresh.refold_rows` and
        :func:`recommender.blend_many.blend_many`).
    """
    codes = ItemCodes(model.item_map)  # model rows are codes: no translation
    folded = refold_rows(
        [h.item_weights(half_life_s=half_life_s) for h in histories],
        item_map=model.item_map, item_factors=model.item_factors, yty=model.yty,
        regularization=model.regularization, alpha=model.alpha, n=n,
        pool=model.pool, pool_factors=model.pool_factors(),
        neighbour_rows=neighbour_rows(codes, session, similar) if neighbourhood else None,
    )
    personal = {pos: (rows, vals) for pos, rows, vals in folded}
    blended = blend_many(
        n=n,
        personal=[personal[j][0] if j in personal else _NO_ROWS
                  for j in range(len(histories))],
        session=session, similar=similar, trending=trending, popular=popular,
        known=[h.item_ids() for h in histories],
        history_size=[len(r) for r in recent], codes=codes)
    return [EntityLists(personal.get(j), b) for j, b in enumerate(blended)]
