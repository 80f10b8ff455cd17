"""The usual ``events`` message read without pydantic, for readers of the whole log.

A full retrain decodes every event of the log, and validating each one as a
:class:`schemas.events.TopicEvent` costs ~4 µs: more than half of the retrain's read of a
million events (``streamrec bench train``). The API writes one shape only — an envelope
``{"v": 1, "events": [...]}`` whose events carry plain ids, a type, numbers and a
context object — and :func:`plain_events` checks that shape directly against the same
limits (:mod:`core.limits`) and the same rules the models state, returning each event's
fields as a tuple.

It answers only when the models would surely accept the whole message; anything else
(another shape, a key it does not know, a value of another type that pydantic might
coerce, a rule broken) gives None, and the caller validates with the models, which
decide and explain. So the rules keep one owner, the models, and this is a shortcut for
their common case: ``tests/unit/schemas/test_topic_plain.py`` checks on thousands of
generated messages that every answer it gives is the models' answer.
"""

from __future__ import annotations

import math
from typing import Any, cast, get_args

import orjson

from core.limits import MAX_ID_LEN, MAX_IMPRESSION_ITEMS, MAX_PRICE, id_problem
from schemas.events import MAX_QUANTITY, TopicEventType

#: Event types whose other rules the shortcut checks (``exposure`` needs an experiment
#: object: the models read those).
_TYPES = frozenset(get_args(TopicEventType)) - {"exposure"}
_KEYS = frozenset(("event_id", "type", "user_id", "anonymous_id", "item_id", "item_ids",
                   "recommendation_id", "quantity", "price", "ts", "received_at",
                   "context", "forwarded"))
#: The keys of the returned fields: an event with others has them checked too.
_RETURNED = frozenset(("event_id", "type", "user_id", "anonymous_id", "item_id", "quantity",
                       "ts", "received_at"))
_ENVELOPE_KEYS = frozenset(("v", "events"))
_INF = math.inf


#: The fields of one event that bulk readers use, as the models give them: ``event_id,
#: type, user_id, anonymous_id, item_id, quantity, ts, received_at`` (both times floats).
#: A plain tuple: a named one costs a Python-level constructor call per event.
PlainEvent = tuple[str, str, str | None, str | None, str | None, int | None, float, float]


def plain_events(raw: bytes | None) -> list[PlainEvent] | None:
    """The events of an API-shaped ``events`` message, each with ``received_at``, or
    None when the models must decide (see the module docstring)."""
    if not raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or not data.keys() <= _ENVELOPE_KEYS:
        return None
    version = data.get("v", 1)
    events = data.get("events")
    if type(version) is not int or version != 1 or type(events) is not list or not events:
        return None
    out: list[PlainEvent] = []
    for ev in events:
        plain = _event(ev)
        if plain is None:
            return None
        out.append(plain)
    return out


def _event(ev: Any) -> PlainEvent | None:
    """One event's fields when the models surely accept it, else None."""
    if type(ev) is not dict or not ev.keys() <= _KEYS:
        return None
    get = ev.get
    kind = get("type")
    event_id = get("event_id")
    user = get("user_id")
    anon = get("anonymous_id")
    item = get("item_id")
    if kind not in _TYPES or not _is_id(event_id):
        return None
    if user is None:
        if anon is None:
            return None  # TopicEvent's rule: someone
    elif not _is_id(user):
        return None
    if (anon is not None and not _is_id(anon)) or (item is not None and not _is_id(item)):
        return None
    ts = get("ts")
    if type(ts) is not float or not 0 < ts < _INF:
        ts = _int_time(ts)
    received = get("received_at")
    if type(received) is not float or not 0 < received < _INF:
        received = _int_time(received)
    if ts is None or received is None:
        return None  # a missing receive time is filled from the record: the models' path
    quantity = get("quantity")
    if quantity is not None and (type(quantity) is not int
                                 or not 1 <= quantity <= MAX_QUANTITY):
        return None
    if not ev.keys() <= _RETURNED and not _rest_valid(ev):
        return None
    # TopicEvent's model rules: what each type needs.
    if kind == "identify":
        if user is None or anon is None:
            return None
    elif kind == "impression":
        if not get("item_ids") and item is None:
            return None
    elif item is None and kind != "forget":
        return None
    # the checks above establish the types
    return cast(PlainEvent, (event_id, kind, user, anon, item, quantity, ts, received))


def _rest_valid(ev: dict[str, Any]) -> bool:
    """The fields bulk readers do not return, checked all the same."""
    items = ev.get("item_ids")
    if items is not None and (type(items) is not list or len(items) > MAX_IMPRESSION_ITEMS
                              or not all(_is_id(i) for i in items)):
        return False
    rec = ev.get("recommendation_id")
    if rec is not None and (type(rec) is not str or len(rec) > MAX_ID_LEN):
        return False
    price = ev.get("price")
    if price is not None and (type(price) not in (int, float)
                              or not 0 <= price <= MAX_PRICE):
        return False  # NaN compares false; ints in range are exact floats
    context = ev.get("context")
    forwarded = ev.get("forwarded")
    return (context is None or type(context) is dict) and (forwarded is None
                                                          or forwarded is True)


def _is_id(value: Any) -> bool:
    """A string the id rule (``core.limits.id_problem``) accepts."""
    return type(value) is str and id_problem(value) is None


def _int_time(value: Any) -> float | None:
    """An integer epoch time as a float (JSON writes whole seconds without a point), or
    None: absent, not a number, or not a positive finite time."""
    if type(value) is int and 0 < value < 1 << 53:
        return float(value)
    return None
