"""From raw topic events to the user × item interaction matrix the full retrain uses.

The retrain reads the whole ``events`` topic, which is delivered at least once and in
which anonymous visitors may later identify themselves. This module applies the same
rules the worker applies incrementally, so the batch model and the live histories agree:

* an event id counts once (the first occurrence wins);
* an ``identify`` event merges its anonymous id into its user id: every event of that
  anonymous id, before or after the identify, counts for the user;
* an event that carries a ``user_id`` counts for that user;
* weights come from :func:`recommender.weights.event_weight`, decay with the event's age
  relative to the entity's newest event (:func:`recommender.weights.recency_decay`), add
  up per (entity, item) and are clamped at zero; zero-weight events (impressions) leave
  no trace.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.idmap import IdMap
from recommender.weights import DECAY_HALF_LIFE_S, event_weight


@dataclass(frozen=True)
class Interactions:
    """An interaction matrix and the id maps of its rows and columns.

    Attributes
    ----------
    matrix
        ``csr_matrix`` of shape ``(len(user_map), len(item_map))``, ``float32``, holding
        each entity's summed, zero-clamped event weight per item; only positive entries are
        stored.
    user_map
        Row ids: user ids, and anonymous ids that never identified.
    item_map
        Column ids.
    n_events
        Distinct events (by id) with a non-zero weight, an item and an entity: what went
        into the sums (including removals whose total was then clamped to zero).
    """

    matrix: sp.csr_matrix
    user_map: IdMap
    item_map: IdMap
    n_events: int


def resolve_entities(events: Iterable[Mapping[str, Any]], *,
                     max_links: int | None = None) -> dict[str, str]:
    """Collect the anonymous id → user id aliases declared by ``identify`` events.

    When one anonymous id was identified as several users (a shared device), the last
    accepted identify in input order wins, as in the worker, which keeps the latest user
    as the anonymous history's alias. All identifies of one anonymous id are keyed by it
    and so share a partition; reading each partition in offset order makes "last" well
    defined. With ``max_links`` (``Settings.identify_max_links``), an identify naming a
    further user once the anonymous id is linked to that many is ignored, as the worker
    ignores it, so a retrain never forwards a history the live lists did not.

    Parameters
    ----------
    events
        Event mappings with at least ``type``, ``anonymous_id`` and ``user_id``.
    max_links
        Distinct users one anonymous id may be linked to; None for no bound.

    Returns
    -------
    dict
        ``anonymous_id -> user_id``.
    """
    book = AliasBook(max_links)
    for ev in events:
        book.record(ev)
    return book.aliases


class AliasBook:
    """The aliases identify events declare, each anonymous id linked to at most
    ``max_links`` distinct users (None: no bound), the latest accepted one winning."""

    def __init__(self, max_links: int | None = None) -> None:
        self.max_links = max_links
        self.aliases: dict[str, str] = {}
        self._links: dict[str, set[str]] = {}

    def record(self, event: Mapping[str, Any]) -> None:
        """Take one event's alias if it is an identify the worker would accept."""
        if event.get("type") == "identify":
            self.link(event.get("anonymous_id"), event.get("user_id"))

    def link(self, anon: Any, user: Any) -> None:
        """Take the alias one ``identify`` event declares, if the worker would accept it."""
        if not (anon and user and anon != user):
            return
        anon, user = str(anon), str(user)
        if self.max_links is not None:
            linked = self._links.setdefault(anon, set())
            if user not in linked:
                if len(linked) >= self.max_links:
                    return
                linked.add(user)
        self.aliases[anon] = user


def entity_of(event: Mapping[str, Any], aliases: Mapping[str, str]) -> str | None:
    """Return the entity an event counts for: its user, else its anonymous id's alias or itself.

    Parameters
    ----------
    event
        An event mapping with ``user_id`` and/or ``anonymous_id``.
    aliases
        The result of :func:`resolve_entities`.

    Returns
    -------
    str or None
        The entity id, or ``None`` when the event names neither.
    """
    user = event.get("user_id")
    if user:
        return str(user)
    anon = event.get("anonymous_id")
    if not anon:
        return None
    return aliases.get(str(anon), str(anon))


#: The fields of one event the matrix reads, in this order: ``(event_id, type, user_id,
#: anonymous_id, item_id, quantity, ts)``. A plain tuple: the full retrain turns a million
#: topic events into these, and a dict per event cost it about a second.
EventRow = tuple[str | None, str, str | None, str | None, str | None, int | None, float]


#: The names of an :data:`EventRow`'s fields, in order.
EVENT_ROW_FIELDS = ("event_id", "type", "user_id", "anonymous_id", "item_id", "quantity", "ts")


def row_event(row: EventRow) -> dict[str, Any]:
    """The event mapping an :data:`EventRow` stands for (:func:`event_row` reads it back),
    for readers of the retrain's rows that work on event mappings (evaluation)."""
    return dict(zip(EVENT_ROW_FIELDS, row, strict=True))


def event_row(event: Mapping[str, Any]) -> EventRow:
    """The :data:`EventRow` of an event mapping (missing fields are None, ``ts`` 0)."""
    return (event.get("event_id"), str(event.get("type") or ""), event.get("user_id"),
            event.get("anonymous_id"), event.get("item_id"), event.get("quantity"),
            float(event.get("ts") or 0.0))


#: An entity as the events name it, before every identify is known: a user id, or a
#: one-tuple of an anonymous id (which resolves to its user, if it has one, at the end).
_EntityKey = str | tuple[str]


@dataclass
class _Kept:
    """The item events the matrix keeps, column by column: the index of each one's
    entity key (:data:`_EntityKey`, in ``keys``), its item's column, weight and time."""

    keys: dict[_EntityKey, int]
    items: IdMap
    entity: list[int]
    item: list[int]
    weight: list[float]
    ts: list[float]


def _kept_events(rows: Iterable[EventRow], items: IdMap, max_links: int | None = None
                 ) -> tuple[_Kept, dict[str, str]]:
    """One pass over the events: the item events of non-zero weight that name an entity
    (first occurrence of an event id only), and the aliases the identify events declare
    (see :func:`resolve_entities` for ``max_links``).

    Items get their columns here, as the events arrive (``items`` first, then new ids in
    first-seen order); entities get provisional keys in first-seen order, which
    :func:`_weighted_cells` turns into rows once the aliases are known. The full retrain
    reads the log in other processes meanwhile: what is indexed here costs no time after
    the last event (a 1M-event log spent ~1.8 s of one core there, the other idle)."""
    seen: set[str] = set()
    book = AliasBook(max_links)
    columns = {id_: n for n, id_ in enumerate(items.ids)}
    out = _Kept(keys={}, items=items, entity=[], item=[], weight=[], ts=[])
    key_of, column_of = out.keys.setdefault, columns.setdefault
    keys = out.keys
    add_entity, add_item = out.entity.append, out.item.append
    add_weight, add_ts = out.weight.append, out.ts.append
    # A 1M-event retrain spends seconds here: one weight lookup per event type, not a
    # function call per event.
    weights: dict[tuple[str, Any], float] = {}
    for event_id, event_type, user, anon, item, quantity, ts in rows:
        if event_id is not None:
            if event_id in seen:
                continue
            seen.add(event_id)
        if event_type == "identify":
            book.link(anon, user)
            continue
        if not item:
            continue
        weight = weights.get((event_type, quantity))
        if weight is None:
            weight = weights[(event_type, quantity)] = event_weight(event_type, quantity)
        if weight == 0.0:
            continue
        key: _EntityKey
        if user:
            key = str(user)
        elif anon:
            key = (str(anon),)
        else:
            continue  # names no entity: no cell
        # len() is read before setdefault inserts: a new key or item gets the next index.
        add_entity(key_of(key, len(keys)))
        add_item(column_of(str(item), len(columns)))
        add_weight(weight)
        add_ts(ts)
    if len(columns) > len(items):
        out.items = IdMap(columns)
    return out, book.aliases


def _weighted_cells(kept: _Kept, aliases: Mapping[str, str], users: IdMap,
                    half_life_s: float | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and weight of each kept event (entities added to ``users`` in the
    order of their first event, as resolved through the aliases), the weight decayed
    with the event's age relative to its entity's newest event."""
    alias = aliases.get
    # Provisional keys in first-seen order: an entity's row is given at the first key
    # that resolves to it, i.e. at its first event, as if each event were resolved alone.
    resolved = [key if isinstance(key, str) else alias(key[0], key[0]) for key in kept.keys]
    rows_of_keys = users.add_all(resolved)
    n = len(kept.entity)
    r = rows_of_keys[np.asarray(kept.entity, dtype=np.int64)] if n else np.zeros(0, np.int64)
    c = np.asarray(kept.item, dtype=np.int64)
    v = np.asarray(kept.weight, dtype=np.float64)
    hl = DECAY_HALF_LIFE_S if half_life_s is None else half_life_s
    if n and math.isfinite(hl) and hl > 0.0:
        t = np.asarray(kept.ts, dtype=np.float64)
        newest = np.full(len(users), -np.inf)
        np.maximum.at(newest, r, t)
        v = v * np.exp2(-np.maximum(newest[r] - t, 0.0) / hl)
    return r, c, v


def build_matrix(
    events: Iterable[Mapping[str, Any]],
    *,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    drop_empty: bool = True,
    half_life_s: float | None = None,
    max_links: int | None = None,
) -> Interactions:
    """Build the deduplicated, alias-resolved user × item weight matrix.

    Aliases are known only once every identify has been read, so the events are read
    once, keeping only what the matrix needs, and resolved afterwards.

    Parameters
    ----------
    events
        Topic events as mappings with ``event_id``, ``type``, ``user_id``,
        ``anonymous_id``, ``item_id``, ``quantity`` (others are ignored). Events without an
        ``event_id`` are not deduplicated.
    user_map, item_map
        Optional maps whose ids come first, in their order (they are copied, never
        modified). New ids are appended.
    drop_empty
        When true (the default), rows and columns without any positive weight are removed
        and the returned maps are compacted to match (relative order kept), so indices may
        differ from the given maps. When false, the matrix covers every id of the maps,
        and given maps keep their indices.
    max_links
        Users one anonymous id may be identified as (see :func:`resolve_entities`).

    Returns
    -------
    Interactions
        The matrix with its row and column maps and the number of contributing events.
    """
    return build_matrix_from_rows((event_row(ev) for ev in events), user_map=user_map,
                                  item_map=item_map, drop_empty=drop_empty,
                                  half_life_s=half_life_s, max_links=max_links)


def build_matrix_from_rows(
    rows: Iterable[EventRow],
    *,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    drop_empty: bool = True,
    half_life_s: float | None = None,
    max_links: int | None = None,
) -> Interactions:
    """:func:`build_matrix` from :data:`EventRow` tuples: what the full retrain feeds
    it, a million at a time, without a mapping per event."""
    kept, aliases = _kept_events(rows, IdMap(item_map.ids if item_map is not None else ()),
                                 max_links)
    users = IdMap(user_map.ids if user_map is not None else ())
    items = kept.items
    row_idx, col_idx, vals = _weighted_cells(kept, aliases, users, half_life_s)
    n = len(row_idx)

    # COO -> CSR sums duplicate (row, col) pairs: the per-entity, per-item total.
    summed = sp.coo_matrix((vals, (row_idx, col_idx)), shape=(len(users), len(items))).tocsr()
    summed.sum_duplicates()
    np.maximum(summed.data, 0.0, out=summed.data)
    summed.eliminate_zeros()

    if drop_empty:
        row_keep = np.flatnonzero(np.diff(summed.indptr) > 0)
        col_keep = np.flatnonzero(np.bincount(summed.indices, minlength=len(items)) > 0)
        summed = summed[row_keep][:, col_keep]
        users = IdMap(users.ids_of(row_keep))
        items = IdMap(items.ids_of(col_keep))

    matrix = sp.csr_matrix(summed, dtype=np.float32)
    matrix.sort_indices()
    return Interactions(matrix=matrix, user_map=users, item_map=items, n_events=n)
