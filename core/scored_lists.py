"""Parsing of the prepared lists stored in Redis: ``{"v", "ts", "items": [[id, score], ...]}``.

Shared by the worker (which reads lists back to refresh them) and the API (which serves
them), so both sides agree on what a well-formed list and a valid id are.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any

import orjson

from core.limits import MAX_ID_LEN, SESSION_ITEMS, id_problem

Scored = tuple[str, float]


def valid_id(value: object) -> bool:
    """A servable id: the API's one id rule (:func:`core.limits.id_problem`), so a list
    never serves an id that tracking would have refused."""
    return isinstance(value, str) and id_problem(value) is None


def finite_float(value: object) -> float | None:
    """``value`` as a finite float, or None for anything else (a bool, text that is no
    number, inf, nan): a score, price or time read back from Redis is never trusted blindly."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sort_scored(pairs: Iterable[Scored]) -> list[Scored]:
    """Descending by score; ties keep their order (stable)."""
    return sorted(pairs, key=lambda p: -p[1])


def _well_formed(items: list[Any]) -> list[Scored] | None:
    """The pairs of a list exactly as the worker and retrain write it (``[id, score,
    …]`` entries with valid string ids and finite float scores, best first), checked with
    C-level passes; None for anything else, which then takes the entry-by-entry path.

    Both paths give the same pairs for such a list; this one costs a fraction (the worker
    parses hundreds of model-neighbour lists per batch: 20 % of its CPU entry by entry).
    """
    if not items:
        return None
    if set(map(type, items)) != {list} or min(map(len, items)) < 2:
        return None
    ids = [e[0] for e in items]
    scores = [e[1] for e in items]
    if set(map(type, ids)) != {str} or set(map(type, scores)) != {float}:
        return None
    # Printable ASCII ids: the cheap checks below are the id rule for them; anything
    # else takes the slow path through valid_id.
    if not all(map(str.isascii, ids)) or not all(map(str.isprintable, ids)):
        return None
    if min(map(len, ids)) < 1 or max(map(len, ids)) > MAX_ID_LEN:
        return None
    if not all(map(math.isfinite, scores)):
        return None
    if any(map(operator.lt, scores[:-1], scores[1:])):  # not best first: sort instead
        return None
    return list(zip(ids, scores, strict=True))


def parse_scored_json(raw: str | bytes | None) -> list[Scored]:
    """A prepared list ``{"v", "ts", "items": [[id, score], ...]}`` (or a bare list of pairs)
    → valid ``(id, score)`` pairs, best first. Malformed input gives ``[]``."""
    if not raw:
        return []
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    items = doc.get("items") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        return []
    fast = _well_formed(items)
    if fast is not None:
        return fast
    pairs: list[Scored] = []
    for entry in items:
        if isinstance(entry, list | tuple) and len(entry) >= 2:
            item_id, score = entry[0], finite_float(entry[1])
        elif isinstance(entry, dict):
            item_id, score = entry.get("item_id"), finite_float(entry.get("score"))
        else:
            continue
        if valid_id(item_id) and score is not None:
            pairs.append((str(item_id), score))
    return sort_scored(pairs)


def parse_recent(raw: str | bytes | None, limit: int = SESSION_ITEMS) -> list[str]:
    """The JSON list of an entity's recent item ids (newest first), deduplicated."""
    if not raw:
        return []
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, list):
        return []
    recent: list[str] = []
    for item in doc:
        if valid_id(item) and item not in recent:
            recent.append(item)
            if len(recent) >= limit:
                break
    return recent
