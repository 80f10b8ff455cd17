"""The bounded, idempotent event history of one entity (a user or an anonymous id).

The worker keeps one :class:`History` per entity in a changelog-backed Faust table and
folds the entity into the current model from it. Delivery is at least once, so applying
the same events twice must change nothing (:meth:`History.apply`): hence event ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from recommender.abuse import note_receipt
from recommender.handover import BOUGHT_COPY_PREFIX, CART_COPY_PREFIX, _copy_id
from recommender.weights import EVENT_WEIGHTS, event_weight, recency_decay

#: One remembered event: ``(event_id, item_id, event_type, ts, received)`` in epoch
#: seconds: ``ts`` the event time histories are ordered by (``min(client time, receive
#: time)``), ``received`` the server's receive time (what abuse decisions trust). A
#: 4-tuple (older table values, simulations) means ``received == ts``.
Entry = tuple[str, str, str, float, float]


#: Total order used for "newest": event time, then event id to break ties the same way on
#: every replica and every replay (``(entry[3], entry[0])``, computed in C: histories are
#: sorted at every batch of every entity).
_order_key = itemgetter(3, 0)


def _newest(times: dict[str, float], keep: int) -> dict[str, float]:
    """The ``keep`` newest of ``item -> time`` (ties broken by item id)."""
    if len(times) <= keep:
        return times
    return dict(sorted(times.items(), key=lambda p: (p[1], p[0]))[-keep:])


def _times(pairs: Iterable[Any] | None) -> dict[str, float]:
    """``item -> time`` of a stored ``[[item, time], ...]`` (``cart``, ``uncart``); no
    comprehension run for the empty or absent field of every user's history."""
    return {str(i): float(t) for i, t in pairs} if pairs else {}


def _as_entry(raw: Iterable[Any]) -> Entry:
    event_id, item_id, event_type, ts, *rest = raw
    return (str(event_id), str(item_id), str(event_type), float(ts),
            float(rest[0]) if rest else float(ts))


def _as_purchase(raw: Any) -> tuple[str, float]:
    # ``[item, ts]``, or a bare item id (values written before purchases had times).
    if isinstance(raw, str):
        return raw, 0.0
    item, ts = raw
    return str(item), float(ts)


@dataclass
class History:
    """Newest-events history of one entity, plus the bits the worker needs around it.

    Attributes
    ----------
    entries
        Remembered events ``(event_id, item_id, event_type, ts)``, kept sorted oldest
        first by ``(ts, event_id)``.
    alias
        For an anonymous id that has been identified: the user id it was merged into
        (the latest of :attr:`links`).
    bought
        Item id → time of its newest purchase, for purchases applied (retained or not),
        so lists never recommend them again; the newest ``max_bought`` are kept.
    links
        The users this anonymous id was identified as, oldest first (bounded by
        :meth:`link`'s ``max_links``).
    cart
        Item id → time of its newest addition, for the items in the cart (tracked only
        for anonymous ids, whose cart an ``identify`` hands over whatever the cap evicted);
        the newest ``max_cart`` are kept, as in Redis.
    uncarted
        Item id → time of its newest removal or purchase (the newest ``2 × max_cart``), so
        an older addition applied later does not bring the item back (as in Redis).
    handed
        For an anonymous id: the receive time of the ``identify`` whose snapshot of this
        history last went to :attr:`alias` (None: never, or an older version's value).
    handed_to
        For an anonymous id: each linked user → the receive time of the ``identify`` that
        last sent it a snapshot (at most one per link, so bounded by ``max_links``).
    handed_copies
        For an anonymous id: each linked user → the digest of the copies its last snapshot
        carried (:func:`recommender.handover.copies_digest`; none: no copies).
    first_received
        Receive time of the entity's first event (its age for the abuse rules).
    receipts
        What the abuse rules need of the entity's latest window (:meth:`note_receipt`).
    """

    entries: list[Entry] = field(default_factory=list)
    alias: str | None = None
    bought: dict[str, float] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    cart: dict[str, float] = field(default_factory=dict)
    uncarted: dict[str, float] = field(default_factory=dict)
    handed: float | None = None
    handed_to: dict[str, float] = field(default_factory=dict)
    handed_copies: dict[str, str] = field(default_factory=dict)
    first_received: float | None = None
    receipts: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries = sorted((_as_entry(e) for e in self.entries), key=_order_key)
        if not isinstance(self.bought, dict):
            self.bought = dict(_as_purchase(p) for p in self.bought)
        if self.alias and self.alias not in self.links:
            self.links = [*self.links, self.alias]

    # -- serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> History:
        """Rebuild a history from :meth:`to_dict` output (``None`` gives an empty one).

        Parameters
        ----------
        data
            The JSON-decoded table value, or ``None`` for an entity never seen.

        Returns
        -------
        History
            A history whose entries are sorted oldest first, whatever order they came in.
        """
        if not data:
            return cls()
        # Fields set here, not through ``__init__`` (its ``__post_init__`` converts what a
        # ``to_dict`` value has converted: per entity and batch the worker's largest history
        # cost; so are receipts with a float time); the alias joins the links as there.
        history = cls.__new__(cls)
        history.alias = data.get("alias") or None
        history.bought = dict(_as_purchase(p) for p in data.get("bought") or ())
        history.links = [str(u) for u in data.get("links") or ()]
        if history.alias and history.alias not in history.links:
            history.links.append(history.alias)
        history.cart = _times(data.get("cart"))
        history.uncarted = _times(data.get("uncart"))
        history.handed = data.get("handed")
        history.handed_to = _times(data.get("handed_to"))
        history.handed_copies = {str(u): str(d) for u, d in data.get("handed_copies") or ()}
        history.first_received = data.get("received")
        history.receipts = [(i, item, t, r, r) if type(r) is float
                            else (str(i), str(item), str(t), float(r), float(r))
                            for i, item, t, r in data.get("receipts") or ()]
        history.entries = sorted(  # a 5-tuple is a to_dict entry: kept, not rebuilt
            [e if len(e) == 5 and type(e) is tuple
             else (e[0], e[1], e[2], float(e[3]), float(e[4] if len(e) > 4 else e[3]))
             for e in data.get("entries") or ()], key=_order_key)
        return history

    def to_dict(self) -> dict[str, Any]:
        """Return a compact JSON-serialisable form, no empty fields: tuples of plain values,
        which the collector stops tracking (lists in the worker's table were walked at each
        older-generation collection, issue 14); JSON arrays as before, same changelog bytes.

        Returns
        -------
        dict
            ``{"entries": ((event_id, item_id, type, ts(, received)), ...)}`` (the receive
            time only when it differs from ``ts``) plus ``"alias"``, ``"links"`` (when
            more than the alias), ``"bought"`` (``((item, ts), ...)`` oldest first),
            ``"cart"``, ``"uncart"``, ``"handed_to"`` and ``"handed_copies"`` (the same
            form), ``"handed"``, ``"received"``, ``"receipts"`` (``((id, item, type,
            received), ...)``) when set.
        """
        out: dict[str, Any] = {"entries": tuple([e if e[4] != e[3] else e[:4]
                                                 for e in self.entries])}
        if self.alias is not None:
            out["alias"] = self.alias
        if self.links and self.links != [self.alias]:
            out["links"] = tuple(self.links)
        if self.bought:
            out["bought"] = tuple(sorted(self.bought.items(), key=lambda p: (p[1], p[0])))
        if self.cart:  # a user's history never has one: no loop built for it
            out["cart"] = tuple(self.cart.items())
        if self.uncarted:
            out["uncart"] = tuple(self.uncarted.items())
        if self.handed is not None:
            out["handed"] = self.handed
        if self.handed_to:
            out["handed_to"] = tuple(self.handed_to.items())
        if self.handed_copies:
            out["handed_copies"] = tuple(self.handed_copies.items())
        if self.first_received is not None:
            out["received"] = self.first_received
        if self.receipts:
            out["receipts"] = tuple([(r[0], r[1], r[2], r[4]) for r in self.receipts])
        return out

    def note_receipt(self, entry: Iterable[Any], *, window_s: float, max_pairs: int
                     ) -> bool:
        """Record an applied event for the abuse rules (its receive time in
        :attr:`first_received`, its (item, type) pair in :attr:`receipts`, see
        :func:`recommender.abuse.note_receipt`); True when anything changed."""
        e = _as_entry(entry)
        changed = False
        if self.first_received is None or e[4] < self.first_received:
            self.first_received = e[4]
            changed = True
        return note_receipt(self.receipts, e, window_s=window_s,
                            max_pairs=max_pairs) or changed

    def link(self, user_id: str, *, max_links: int) -> bool:
        """Identify this anonymous id as ``user_id``: True (and :attr:`alias` set) unless
        it was already linked to ``max_links`` other users, which bounds how many users one
        anonymous id's history can be forwarded to."""
        if user_id not in self.links:
            if len(self.links) >= max_links:
                return False
            self.links.append(user_id)
        self.alias = user_id
        return True

    def handover(self, since: float | None = None, *, copies: bool = True) -> list[Entry]:
        """What an ``identify`` hands to the user: the remembered entries (those received
        at or after ``since``, if given), plus, unless ``copies`` is False,
        :meth:`copies` of what the cap evicted."""
        entries = self.entries if since is None else [e for e in self.entries if e[4] >= since]
        return [*entries, *self.copies()] if copies else list(entries)

    def copies(self) -> list[Entry]:
        """The copies :meth:`handover` adds, oldest first: a purchase entry for every item
        of :attr:`bought` whose purchase is no longer among the entries (a history longer
        than the cap evicted it), so the user never gets an item the anonymous id bought
        recommended, and an ``add_to_cart`` entry for every item of :attr:`cart` whose
        addition is no longer among them, so the user's cart holds every item the
        anonymous cart does. Such an entry's id is derived from the item
        (:data:`~recommender.handover.BOUGHT_COPY_PREFIX`) or the item and its time
        (:data:`~recommender.handover.CART_COPY_PREFIX`), the same at every identify and
        replay."""
        kept = {e[1] for e in self.entries if e[2] == "purchase"}
        extra = [(_copy_id(BOUGHT_COPY_PREFIX, item), item, "purchase", ts, ts)
                 for item, ts in self.bought.items() if item not in kept and ts > 0]
        added = {(e[1], e[3]) for e in self.entries if e[2] == "add_to_cart"}
        extra += [(_copy_id(CART_COPY_PREFIX, f"{ts!r} {item}"), item, "add_to_cart", ts, ts)
                  for item, ts in self.cart.items() if (item, ts) not in added]
        return sorted(extra, key=_order_key)

    def _track_cart(self, entry: Entry, max_cart: int) -> None:
        """Follow the cart as Redis does (``stream.item_ops``): an addition counts unless
        the item was removed at that time or later; a removal or purchase takes out an
        item added at that time or before, and is remembered."""
        _, item, etype, ts, _ = entry
        if etype == "add_to_cart":
            if self.uncarted.get(item, float("-inf")) < ts:
                self.cart[item] = max(ts, self.cart.get(item, ts))
                self.cart = _newest(self.cart, max_cart)
        elif etype in ("remove_from_cart", "purchase"):
            if self.cart.get(item, float("inf")) <= ts:
                del self.cart[item]
            self.uncarted[item] = max(ts, self.uncarted.get(item, ts))
            self.uncarted = _newest(self.uncarted, 2 * max_cart)

    # -- updates -------------------------------------------------------------------------
    def item_ids(self) -> set[str]:
        """Items the entity touched (any remembered event with an item) plus purchases:
        what a refreshed list never recommends back to it."""
        return {e[1] for e in self.entries if e[1]} | self.bought.keys()

    @property
    def event_ids(self) -> set[str]:
        """Ids of the remembered events (built per call: O(len), fine for a few hundred)."""
        return {e[0] for e in self.entries}

    def apply(self, events: Iterable[Iterable[Any]], *, max_entries: int,
              max_bought: int | None = None, max_cart: int | None = None) -> list[Entry]:
        """Add events, keep the newest ``max_entries``, and report what actually changed.

        An event is ignored when its id is already remembered (a redelivery) or when it
        would not survive the cap (it is older than everything kept in a full history).
        The kept set is therefore "the newest ``max_entries`` of everything ever applied",
        whatever the order or the number of times events arrive, which makes replays
        no-ops: a redelivered event is either still remembered (same id) or was evicted,
        and then it is older than every entry kept since, so it is dropped again.

        Purchases are recorded in :attr:`bought` even when the event itself is too old to
        be retained; :attr:`bought` keeps the ``max_bought`` newest purchases. With
        ``max_cart``, cart events move :attr:`cart` the same way.

        Parameters
        ----------
        events
            ``(event_id, item_id, event_type, ts(, received))`` tuples; within one call
            the first occurrence of an event id wins. Events without an item id are
            ignored.
        max_entries
            The cap (the worker passes ``Settings.history_max``).
        max_bought
            Most purchases remembered (``Settings.bought_max``; None: no cap).
        max_cart
            Items kept in :attr:`cart` (``Settings.cart_max``); None: the cart is not
            tracked (a user's: only an anonymous cart is handed over).

        Returns
        -------
        list of tuple
            The entries that are now in the history and were not before, oldest first.
            Empty means the call changed nothing but possibly :attr:`bought`.
        """
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        seen = self.event_ids
        fresh: list[Entry] = []
        for raw in events:
            entry = _as_entry(raw)
            if entry[0] in seen or not entry[1]:
                continue
            seen.add(entry[0])
            if entry[2] == "purchase":
                self.bought[entry[1]] = max(entry[3], self.bought.get(entry[1], entry[3]))
            if max_cart is not None:
                self._track_cart(entry, max_cart)
            fresh.append(entry)
        if max_bought is not None and len(self.bought) > max_bought:
            newest = sorted(self.bought.items(), key=lambda p: (p[1], p[0]))[-max_bought:]
            self.bought = dict(newest)
        if not fresh and len(self.entries) <= max_entries:
            return []

        merged = sorted(self.entries + fresh, key=_order_key)
        if len(merged) > max_entries:
            merged = merged[-max_entries:]
        fresh_ids = {e[0] for e in fresh}
        self.entries = merged
        return [e for e in merged if e[0] in fresh_ids]

    # -- views ---------------------------------------------------------------------------
    def item_weights(self, *, half_life_s: float | None = None) -> dict[str, float]:
        """Sum the event weights per item: this entity's row for fold-in.

        Mirrors :func:`recommender.interactions.build_matrix`: weights add up per item
        (each scaled by :func:`~recommender.weights.recency_decay` relative to the newest
        remembered event) and the total is clamped at zero, so "added then removed from
        cart" leaves the view's weight and never a negative preference. Quantity is not
        stored in the history, so every purchase counts as one unit here.

        Parameters
        ----------
        half_life_s
            Decay half-life; ``None`` uses :data:`~recommender.weights.DECAY_HALF_LIFE_S`.

        Returns
        -------
        dict
            ``item_id -> weight`` for items with a positive total only.
        """
        newest = self.entries[-1][3] if self.entries else 0.0
        totals: dict[str, float] = {}
        for _, item_id, event_type, ts, _ in self.entries:
            w = event_weight(event_type)
            if w != 0.0:
                w *= recency_decay(ts, newest, half_life_s)
                totals[item_id] = totals.get(item_id, 0.0) + w
        return {item: w for item, w in totals.items() if w > 0.0}

    def recent_items(self, k: int, *, before_ts: float | None = None) -> list[str]:
        """Return up to ``k`` distinct recently touched items, newest first.

        Only events with a positive :data:`~recommender.weights.EVENT_WEIGHTS` count
        (views, clicks, cart adds, purchases): an impression is not the shopper's action
        and a cart removal should not seed "more like this".

        Parameters
        ----------
        k
            Most items to return.
        before_ts
            When given, only events strictly older than this time count, e.g. the items
            seen before a given new event when pairing it for co-occurrence.

        Returns
        -------
        list of str
            Item ids, most recent first, without repeats.
        """
        out: list[str] = []
        if k <= 0:
            return out
        taken: set[str] = set()
        for _, item_id, event_type, ts, _ in reversed(self.entries):
            if before_ts is not None and ts >= before_ts:
                continue
            if EVENT_WEIGHTS.get(event_type, 0.0) <= 0.0 or item_id in taken:
                continue
            taken.add(item_id)
            out.append(item_id)
            if len(out) >= k:
                break
        return out

    def __len__(self) -> int:
        return len(self.entries)
