"""One worker batch, the pure part: what each entity's events change.

The streaming worker (``stream/processor.py``) and the evaluator's in-memory replay of it
(``recommender/evaluation/worker_sim.py``) run every batch through these functions and
differ only in where the results go: the worker turns them into Redis operations and
writes to its Faust table, the replay applies them to arrays and dicts. So the worker
that is evaluated is the worker that is deployed.

Per batch:

1. :func:`group_by_entity` — the events of each entity, entities in order of first
   appearance, events in topic order;
2. :func:`step_entity` per entity — its :class:`~recommender.history.History` updated
   event by event (idempotent by event id), each event's counted increments
   (:func:`count_event`: popularity, forward-decayed trending, co-occurrence with the
   items the entity saw before, scaled by the abuse policy), and the forwards of an
   identified anonymous history;
3. the lists of the entities whose history changed: :mod:`recommender.relist`.

Pure: plain values in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol, TypeVar

from recommender.abuse import AbusePolicy, contribution
from recommender.cooccurrence import cooccurrence_pairs
from recommender.history import Entry, History
from recommender.trending import forward_decay
from recommender.weights import popularity_weight

__all__ = [
    "EntityStep", "Forward", "Increments", "PlainEvent", "StepConfig", "StepEvent",
    "count_event", "group_by_entity", "step_entity",
]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class StepEvent(Protocol):
    """What the batch step reads of an event (``schemas.TopicEvent`` has all of it)."""

    @property
    def event_id(self) -> str:
        """Event id (counted once per id)."""

    @property
    def type(self) -> str:
        """Event type."""

    @property
    def item_id(self) -> str | None:
        """The item, if any."""

    @property
    def user_id(self) -> str | None:
        """The user id (the target of an ``identify``)."""

    @property
    def ts(self) -> float:
        """Event time, epoch seconds."""

    @property
    def quantity(self) -> Any:
        """Units bought (purchases)."""


class PlainEvent(NamedTuple):
    """A :class:`StepEvent` built from plain values (the evaluator's events)."""

    event_id: str
    type: str
    item_id: str | None
    ts: float
    quantity: Any = None
    user_id: str | None = None


@dataclass(frozen=True)
class StepConfig:
    """The worker settings the batch step needs (``Settings`` names)."""

    history_max: int = 200
    cooc_window: int = 20
    trending_half_life_s: float = 7200.0
    #: Manipulation resistance (``stream.item_ops.abuse_policy``); None counts fully.
    abuse: AbusePolicy | None = None

    @classmethod
    def of(cls, knobs: Any) -> StepConfig:
        """These fields read from any config with the same names (the worker's
        ``ProcessorConfig``, the replay's ``StreamConfig``)."""
        return cls(**{f.name: getattr(knobs, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Increments:
    """The counted effects of one event on its item (applied once per event id).

    ``popular`` is 0 when the abuse policy discounted the event to nothing: the event
    still counts as a user of the item, but moves no score.
    """

    item: str
    popular: float
    trending: float
    cooc: list[tuple[str, str, float]]


class Forward(NamedTuple):
    """Events an identified anonymous entity hands to its user: one event of the batch
    (its position in the entity's events, to re-address), or a snapshot of the
    anonymous history's entries (at its ``identify``)."""

    target: str
    event: int | None = None
    entries: list[Entry] | None = None


@dataclass
class EntityStep:
    """What one entity's events of a batch did (see :func:`step_entity`)."""

    history: History
    #: The history changed (new entries or a new alias): store it, rebuild the lists.
    changed: bool = False
    #: The entity had item events (an unchanged history may still have stale lists).
    has_items: bool = False
    #: ``(position, increments or None)`` for every event but ``identify``, in order.
    counted: list[tuple[int, Increments | None]] = field(default_factory=list)
    #: Positions of the events that entered the history.
    added: list[int] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)


def group_by_entity(items: Iterable[T], entity_of: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` grouped by ``entity_of(item)``: groups in order of first appearance,
    items in input order."""
    out: dict[K, list[T]] = {}
    for item in items:
        out.setdefault(entity_of(item), []).append(item)
    return out


def count_event(ev: StepEvent, history: History, *, t0: float,
                config: StepConfig) -> Increments | None:
    """The counted increments of one event, given the entity's history before it.

    None when the event counts for no item score (no item, or a type of popularity
    weight 0 such as an impression). Otherwise the event's popularity weight, scaled by
    :func:`recommender.abuse.contribution` over the prior entries when a policy is set,
    goes to ``popular``; forward-decayed from ``t0`` to ``trending``; and paired with the
    entity's recent items (:func:`recommender.cooccurrence.cooccurrence_pairs`).
    """
    weight = popularity_weight(ev.type, ev.quantity)
    item = ev.item_id
    if item is None or weight <= 0:
        return None
    if config.abuse is not None:
        weight *= contribution(event_id=ev.event_id, item_id=item, event_type=ev.type,
                               ts=ev.ts, prior=history.entries, policy=config.abuse)
        if weight <= 0:
            return Increments(item, 0.0, 0.0, [])
    decayed = weight * float(forward_decay(ev.ts, t0=t0,
                                           half_life_s=config.trending_half_life_s))
    pairs = cooccurrence_pairs(item, history.recent_items(config.cooc_window),
                               weight=weight, window=config.cooc_window)
    return Increments(item, weight, decayed, pairs)


def step_entity(history: History, events: Sequence[StepEvent], *, t0: float,
                config: StepConfig) -> EntityStep:
    """Apply one entity's events of a batch to its history, in order.

    ``identify`` sets the history's alias and forwards a snapshot of its entries to the
    user; any later event without a user id of an aliased history is forwarded to it
    too. Every other event is counted (:func:`count_event`, against the history as it
    was before the event), and item events other than impressions enter the history
    (:meth:`recommender.history.History.apply`, a no-op for a known event id).

    ``history`` is updated in place and returned in the step.
    """
    step = EntityStep(history)
    for pos, ev in enumerate(events):
        if ev.type == "identify":
            if history.alias != ev.user_id:
                history.alias = ev.user_id
                step.changed = True
            step.forwards.append(Forward(ev.user_id or "", entries=list(history.entries)))
            continue
        if history.alias and ev.user_id is None:
            step.forwards.append(Forward(history.alias, event=pos))
        step.counted.append((pos, count_event(ev, history, t0=t0, config=config)))
        if ev.item_id and ev.type != "impression":
            step.has_items = True
            entry = (ev.event_id, ev.item_id, ev.type, ev.ts)
            if history.apply([entry], max_entries=config.history_max):
                step.changed = True
                step.added.append(pos)
    return step
