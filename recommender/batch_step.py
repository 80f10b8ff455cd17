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
   event by event (idempotent by event id, with the receipts the abuse rules read),
   each event's counted increments (:func:`count_event`: popularity,
   trending forward-decayed from the order time, co-occurrence with the items the entity saw
   before, scaled by the abuse policy on the server's receive time), and the forwards of
   an identified anonymous history (at most ``identify_max_links`` users per anonymous id);
3. the lists of the entities whose history changed: :mod:`recommender.relist`.

Pure: plain values in and out, no I/O. What is shared by every worker and so kept in
Redis — the newcomer budget of an item (:mod:`recommender.abuse`, rule 5) — is not
decided here: an increment only says which window's budget it draws on
(:attr:`Increments.newcomer_window`), and the writer's script applies the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol, TypeVar

from recommender.abuse import AbusePolicy, assess, window_of
from recommender.cooccurrence import cooccurrence_pairs
from recommender.handover import copies_digest
from recommender.history import Entry, History
from recommender.trending import forward_decay
from recommender.weights import popularity_weight

__all__ = [
    "CART_TYPES", "EntityStep", "Forward", "Increments", "PlainEvent", "StepConfig",
    "StepEvent", "count_event", "group_by_entity", "step_entity",
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
        """Event time the client gave, epoch seconds."""

    @property
    def receive_time(self) -> float:
        """Server receive time, epoch seconds: what abuse decisions trust."""

    @property
    def order_ts(self) -> float:
        """The event time histories are ordered by and trending decays from (never after
        the receive time)."""

    @property
    def quantity(self) -> Any:
        """Units bought (purchases)."""

    @property
    def backfill(self) -> bool | None:
        """True for an operator's backfill (``streamrec load --via kafka``): counted with
        full trust by the abuse rules."""


class PlainEvent(NamedTuple):
    """A :class:`StepEvent` built from plain values (the evaluator's events). Without a
    ``received_at`` (recorded data sets) an event arrived when it happened: its receive
    time and order time are its ``ts``; with one, they follow ``schemas.TopicEvent``."""

    event_id: str
    type: str
    item_id: str | None
    ts: float
    quantity: Any = None
    user_id: str | None = None
    received_at: float | None = None
    backfill: bool | None = None

    @property
    def receive_time(self) -> float:
        """``received_at``, else the event time."""
        return self.received_at if self.received_at is not None else self.ts

    @property
    def order_ts(self) -> float:
        """``min(ts, receive_time)``, as ``schemas.TopicEvent.order_ts``."""
        return min(self.ts, self.receive_time)


#: An ``identify`` as the user an anonymous history is already aliased to hands the
#: history over again only this long (receive time) after the last snapshot: at most one
#: full copy per day on the log, however often a tracking-key holder repeats it.
REHANDOVER_S = 86_400.0


@dataclass(frozen=True)
class StepConfig:
    """The worker settings the batch step needs (``Settings`` names)."""

    history_max: int = 200
    cooc_window: int = 5
    trending_half_life_s: float = 7200.0
    #: Manipulation resistance (``stream.item_ops.abuse_policy``); None counts fully.
    abuse: AbusePolicy | None = None
    #: Purchases a history remembers (``Settings.bought_max``; None: all).
    bought_max: int | None = None
    #: Users one anonymous id may be identified as (``Settings.identify_max_links``).
    identify_max_links: int = 3
    #: Cart items an anonymous history follows for its ``identify`` (``Settings.cart_max``;
    #: None: carts are not followed).
    cart_max: int | None = 100

    @classmethod
    def of(cls, knobs: Any) -> StepConfig:
        """These fields read from any config with the same names (the worker's
        ``ProcessorConfig``, the replay's ``StreamConfig``)."""
        return cls(**{f.name: getattr(knobs, f.name) for f in fields(cls)})


@dataclass(slots=True)
class Increments:
    """The counted effects of one event on its item (applied once per event id); never
    changed once made (not ``frozen``: a frozen dataclass sets each field through
    ``object.__setattr__``, ~3x the cost of this one, and one is made per event).

    ``popular`` is 0 when the abuse policy discounted the event to nothing: the event
    still counts as a user of the item, but moves no score. ``newcomer_window`` is set
    when the sender is not yet fully trusted and the policy has a newcomer budget: the
    abuse window whose budget of the item the increments draw on (rule 5 of
    :mod:`recommender.abuse`; the worker's writer scales them by the share it gets).
    """

    item: str
    popular: float
    trending: float
    cooc: list[tuple[str, str, float]]
    newcomer_window: int | None = None


class Forward(NamedTuple):
    """Events an identified anonymous entity hands to its user: one event of the batch
    (its position in the entity's events, to re-address), or a snapshot of the
    anonymous history's entries (at its ``identify``)."""

    target: str
    event: int | None = None
    entries: list[Entry] | None = None


@dataclass(slots=True)
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
    #: Positions of the ``identify`` events applied (not refused).
    identified: list[int] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    #: Identify events ignored: the anonymous id was linked to too many users already.
    identify_refused: int = 0


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
    weight 0 such as an impression). Otherwise the event's popularity weight (a
    purchase's quantity capped by the policy), scaled by
    :func:`recommender.abuse.assess` over the history's receipts and first receive time
    when a policy is set, goes to ``popular``; forward-decayed from ``t0`` on the order
    time, ``min(timestamp, receive time)`` (a back-dated event trended when it happened;
    a client's timestamp cannot inflate it), to ``trending``; and paired with the
    entity's recent items (:func:`recommender.cooccurrence.cooccurrence_pairs`).
    """
    policy = config.abuse
    quantity = policy.quantity(ev.quantity) if policy is not None else ev.quantity
    weight = popularity_weight(ev.type, quantity)
    item = ev.item_id
    if item is None or weight <= 0:
        return None
    received = ev.receive_time
    newcomer_window = None
    if policy is not None:
        multiplier, trust = assess(event_id=ev.event_id, item_id=item, event_type=ev.type,
                                   received=received, prior=history.receipts, policy=policy,
                                   first_received=history.first_received,
                                   trusted=bool(ev.backfill))
        weight *= multiplier
        if weight <= 0:
            return Increments(item, 0.0, 0.0, [])
        if trust < 1.0 and policy.newcomer_budget > 0:
            newcomer_window = window_of(received, policy.window_s)
    # Trending decays from when the event happened as far as the server can tell: its
    # order time, min(client timestamp, receive time). A client can only date an event
    # back (which lowers its own weight), never ahead of its arrival, so a backfill of
    # last week's views is last week's trend, not today's, and nothing inflates.
    decayed = weight * float(forward_decay(ev.order_ts, t0=t0,
                                           half_life_s=config.trending_half_life_s))
    pairs = cooccurrence_pairs(item, history.recent_items(config.cooc_window),
                               weight=weight, window=config.cooc_window)
    return Increments(item, weight, decayed, pairs, newcomer_window)


#: The events that move a cart (:meth:`History.apply` with ``max_cart``; the cart,
#: basket and carter keys in Redis too, ``stream.item_ops``).
CART_TYPES = frozenset({"add_to_cart", "remove_from_cart", "purchase"})


def _hand_over(history: History, user: str, received: float, alias: str | None,
               step: EntityStep) -> None:
    """The snapshot an ``identify`` as ``user`` (received at ``received``) forwards, given
    the history's alias before it (:func:`step_entity`). Nothing for the current alias
    within :data:`REHANDOVER_S` of its last snapshot; for a user that got one within that
    time before another user took the alias, only the entries received since, and the
    copies of what the cap evicted only when they changed since (switching back and
    forth between linked users copied the whole history each time); else all. A snapshot
    recorded at exactly ``received`` is this identify's own, redelivered (the worker
    stopped before its forwards reached the log): all again."""
    since = history.handed_to.get(user)
    if since is not None and not 0 < received - since < REHANDOVER_S:
        since = None
    if alias == user:
        since = since if since is not None else history.handed
        if since is not None and 0 < received - since < REHANDOVER_S:
            return
        since = None
    # the copies of what the cap evicted go again only when they changed since the
    # user's own last snapshot (it holds every copy of that one)
    copies = history.copies()  # once: for the digest and, when they go, the snapshot
    digest = copies_digest(copies)
    entries = history.handover(since, copies=False)
    if since is None or history.handed_copies.get(user, "") != digest:
        entries += copies
    step.forwards.append(Forward(user, entries=entries))
    history.handed = history.handed_to[user] = received
    if digest:
        history.handed_copies[user] = digest
    else:
        history.handed_copies.pop(user, None)
    step.changed = True


def step_entity(history: History, events: Sequence[StepEvent], *, t0: float,
                config: StepConfig) -> EntityStep:
    """Apply one entity's events of a batch to its history, in order.

    ``identify`` links the history to the user (:meth:`History.link`: ignored, and
    counted in ``identify_refused``, once the anonymous id is linked to
    ``identify_max_links`` other users) and forwards a snapshot of its entries to the
    user; any later event without a user id of an aliased history is forwarded to it
    too. So an ``identify`` as the user the history is already aliased to forwards
    nothing within :data:`REHANDOVER_S` of the snapshot before: the user got it and
    every event since (with the public tracking key, the same identify sent again and
    again made a full copy of the history on the log each time). Past that, or when the
    history does not record its last snapshot (an older version's), it goes again: the
    user's own history may have expired from the table meanwhile, and an older
    version's snapshot had no cart copies. An ``identify`` as another linked user that
    got a snapshot within that time forwards only the entries received since
    (:func:`_hand_over`). Every other event is counted
    (:func:`count_event`, against the history as it was before the event), and item
    events other than impressions enter the history
    (:meth:`recommender.history.History.apply`, a no-op for a known event id) as
    ``(event_id, item, type, order time, receive time)``, after being noted in its
    receipts for the abuse rules (:meth:`History.note_receipt`); an anonymous event also
    moves the history's cart (``config.cart_max``), which an ``identify`` hands over.

    ``history`` is updated in place and returned in the step.
    """
    step = EntityStep(history)
    policy = config.abuse
    for pos, ev in enumerate(events):
        if ev.type == "identify":
            before = (history.alias, len(history.links))
            if not history.link(ev.user_id or "", max_links=config.identify_max_links):
                step.identify_refused += 1
                continue
            step.changed = step.changed or before != (history.alias, len(history.links))
            step.identified.append(pos)
            _hand_over(history, ev.user_id or "", ev.receive_time, before[0], step)
            continue
        if history.alias and ev.user_id is None:
            step.forwards.append(Forward(history.alias, event=pos))
        step.counted.append((pos, count_event(ev, history, t0=t0, config=config)))
        if ev.item_id and ev.type != "impression":
            step.has_items = True
            entry = (ev.event_id, ev.item_id, ev.type, ev.order_ts, ev.receive_time)
            if policy is not None and history.note_receipt(
                    entry, window_s=policy.window_s, max_pairs=policy.max_per_window):
                step.changed = True
            cart = config.cart_max if ev.user_id is None else None
            # an entry too old to keep may still move the cart; a redelivered one does not
            carted = ((dict(history.cart), dict(history.uncarted))
                      if cart is not None and ev.type in CART_TYPES else None)
            if history.apply([entry], max_entries=config.history_max,
                             max_bought=config.bought_max, max_cart=cart):
                step.changed = True
                step.added.append(pos)
            elif carted is not None and carted != (history.cart, history.uncarted):
                step.changed = True
    return step
