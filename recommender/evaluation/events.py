"""Events as the evaluator handles them, and the worker's batching replayed in event time.

Evaluation events are plain mappings shaped like the ``events`` topic
(``event_id, type, user_id, anonymous_id, item_id, ts, quantity``) plus the resolved
``entity`` they count for, so :func:`recommender.interactions.build_matrix` and
:class:`recommender.history.History` read them exactly as the worker and the retrain do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from recommender.interactions import entity_of, resolve_entities

#: One evaluation event: a topic-shaped mapping with an ``entity`` key added.
Event = Mapping[str, Any]


def prepare_events(events: Iterable[Mapping[str, Any]], *,
                   sort: bool = True) -> list[dict[str, Any]]:
    """Resolve each event's entity, drop what no model can use, and order by time.

    ``identify`` events only declare aliases (an anonymous id's later and earlier events
    count for the user, as in the retrain), events without an entity or an item are
    dropped, and duplicate event ids keep their first occurrence, as everywhere else.

    Parameters
    ----------
    events
        Topic-shaped event mappings.
    sort
        Sort by ``ts`` (stable, so equal times keep input order). Use ``False`` for
        untimed data whose order was chosen by the caller.

    Returns
    -------
    list of dict
        Copies of the kept events, each with an ``entity`` key.
    """
    raw = list(events)
    aliases = resolve_entities(raw)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ev in raw:
        if ev.get("type") == "identify" or not ev.get("item_id"):
            continue
        event_id = ev.get("event_id")
        if event_id is not None:
            if event_id in seen:
                continue
            seen.add(str(event_id))
        entity = entity_of(ev, aliases)
        if entity is None:
            continue
        out.append({**ev, "entity": entity, "ts": float(ev.get("ts") or 0.0)})
    if sort:
        out.sort(key=lambda e: e["ts"])
    return out


def stream_batches(events: Sequence[Event], *, size: int, within_s: float) -> Iterator[list[Event]]:
    """Cut a time-ordered stream into the batches a live worker would see.

    The worker takes up to ``size`` messages, or whatever arrived within ``within_s``
    seconds of the first one (Faust ``take_events(size, within=...)``). Replayed in event
    time that means: a batch closes when it is full or when the next event is more than
    ``within_s`` after the batch's first event.

    Parameters
    ----------
    events
        Events sorted by ``ts``.
    size
        ``Settings.stream_batch_size``.
    within_s
        ``Settings.stream_batch_within_s``.

    Yields
    ------
    list
        Consecutive, non-empty batches covering every event once.
    """
    batch: list[Event] = []
    start = 0.0
    for ev in events:
        if batch and (len(batch) >= size or ev["ts"] - start > within_s):
            yield batch
            batch = []
        if not batch:
            start = ev["ts"]
        batch.append(ev)
    if batch:
        yield batch


def backlog_batches(events: Sequence[Event], *, size: int) -> Iterator[list[Event]]:
    """Cut a backlog into full batches, as a worker catching up on a topic does.

    Parameters
    ----------
    events
        Events in topic order.
    size
        ``Settings.stream_batch_size``.

    Yields
    ------
    list
        Batches of ``size`` events (the last may be shorter).
    """
    for start in range(0, len(events), size):
        yield list(events[start : start + size])
