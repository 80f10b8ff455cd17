"""A batch's counted effects split by hash slot, applied exactly once in each.

An event's effects span slots (``core.redis_keys``): the shared slot (popularity,
trending, attribution, its newcomer budget), its item's bucket (counts, distinct users,
carters, buyers, co-occurrence), the buckets of the items it co-occurs with, and its
entity's slot (cart, basket, purchases). A Lua call touches one slot only, so:

1. **The shared slot decides.** One ``APPLY_SLOT`` call (per :data:`LUA_CHUNK_EVENTS`
   events) adds each event to the seen set; the first time, it applies the event's
   shared effects and keeps its effects on the other slots in an *outbox* entry —
   gated by the catalog and scaled by the event's share of its newcomer budget there,
   once. The entry, not a recomputation, is what the other slots apply: a redelivered
   event's effects computed again from a history that already holds it would differ
   (other co-occurrence partners, another abuse verdict).
2. **Every other slot applies** the outbox entries it has not applied yet (a per-slot
   marker set, in the same call) and the event's always-ops (idempotent by nature:
   cart, basket, carters).
3. **Clean-up**: the outbox entries are dropped right after, the markers with the next
   batch (in that order: a marker must outlive its entry, or a late holder of the entry
   would apply it again). Both expire with the dedupe window in case a worker died.

On one standalone Redis (no cluster) a script may touch keys of any slot, so the writer
skips the split (:func:`plan` with ``split=False``): one call applies each new event
whole, atomically with its seen-set check, in one round trip. The split is what a
Redis Cluster needs; its tests run on a real cluster (tests/integration/test_cluster_*).

An entry goes back to the writer that made it (its retry after an outage) and, once it
is :data:`HANDOVER_S` old, to anyone who sees its event again: the redelivery of a
batch whose worker died between the two round trips (Kafka hands the partition over
after the session timeout, later than that). A rebuild replaying the log while the live
worker applies the same events does not get entries the live worker is still applying.
A worker killed anywhere in between, a batch retried after an outage, or a replay
therefore changes each slot exactly once. Per-event dedupe state stays where it was
before the split: one seen set (the shared slot's); outbox entries and markers live
only while a batch is in flight.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.redis_client import Call, Lua, command, one_slot
from core.redis_keys import SHARED_TAG, RedisKeys, tag_of
from stream.write_scripts import APPLY_SLOT

#: Events per Lua call: a script blocks its Redis while it runs (~80 µs per event of the
#: burst bench: 250 events keep an API read waiting behind one at most ~20 ms), and under
#: backlog a step carries thousands of events; a slot's chunks share a round trip.
LUA_CHUNK_EVENTS = 250
#: The same bound for calls that apply whole events (:func:`_whole`: about half as much
#: again per event, so fewer of them keep a read's wait as short).
WHOLE_CHUNK_EVENTS = 160

APPLY = Lua(APPLY_SLOT)
#: Age at which another writer may take over an outbox entry (below the consumer-group
#: session timeout: a dead worker's partitions move only after it).
HANDOVER_S = 2.0

#: One Redis command as a flat list: ["ZINCRBY", key, incr, member], ... (an options
#: object may lead, see stream.item_ops).
Op = list[Any]


def op_key(op: Op) -> str:
    """The key an op writes (after its options object, if any)."""
    return str(op[2] if isinstance(op[0], dict) else op[1])


def gate_items(op: Op) -> list[str]:
    """The items an op needs in the catalog (its ``c`` option)."""
    return list(op[0].get("c") or ()) if isinstance(op[0], dict) else []


@dataclass
class _Slot:
    """One slot's share of a batch: its entries and the sorted sets to trim."""

    events: list[dict[str, Any]] = field(default_factory=list)
    trims: dict[str, int] = field(default_factory=dict)


@dataclass
class SlotPlan:
    """A batch split by slot: the shared slot's entries (one per event), the always-ops
    of the other slots, and the items whose catalog presence those need."""

    shared: _Slot
    always: dict[str, _Slot]
    trims: dict[str, dict[str, int]]
    gated: list[str]
    hours: list[int]
    #: Every effect in the shared call (:func:`_whole`): its keys span slots.
    whole: bool = False


def plan(ops: Sequence[Any], keys: RedisKeys, *, gate: bool, split: bool = True) -> SlotPlan:
    """Split the ``EventOps`` of a batch by slot (hash tag); ``split`` False (one
    standalone Redis, where a script may touch any key) puts every effect in the shared
    call: see :func:`_whole`."""
    if not split:
        return _whole(ops, keys, gate=gate)
    shared = _Slot()
    always: dict[str, _Slot] = {}
    trims: dict[str, dict[str, int]] = {}
    gated: dict[str, None] = {}
    hours: dict[int, tuple[str, str, str]] = {}
    for o in ops:
        head = _head(o, keys, gate=gate, guarded=[], always=[], hours=hours)
        elsewhere: dict[str, list[Op]] = {}
        for op in o.guarded:
            tag = tag_of(op_key(op))
            (head["g"] if tag == SHARED_TAG else elsewhere.setdefault(tag, [])).append(op)
        for op in o.always:
            tag = tag_of(op_key(op))
            if tag == SHARED_TAG:
                head["a"].append(op)
            else:
                always.setdefault(tag, _Slot()).events.append({"g": [], "a": [op]})
                gated.update(dict.fromkeys(gate_items(op)))
        if elsewhere:
            head["x"] = orjson.dumps(elsewhere).decode()
            head["o"] = keys.outbox(o.hour)
        shared.events.append(head)
        for key, keep in o.trims.items():
            tag = tag_of(key)
            if tag == SHARED_TAG:
                shared.trims[key] = keep
            else:
                trims.setdefault(tag, {})[key] = keep
    return SlotPlan(shared, always, trims, list(gated), [o.hour for o in ops])


def _whole(ops: Sequence[Any], keys: RedisKeys, *, gate: bool) -> SlotPlan:
    """Every effect of each event in the shared call: on one standalone Redis the seen
    set decides and the whole event applies in the same script, atomically, so no outbox
    entry, marker or second round trip is needed (the burst bench's worker spent ~20 % of
    its CPU on them). The outbox hash is still named, so an entry a splitting writer left
    (a cluster-mode worker that died mid-batch) is handed over as before."""
    shared = _Slot()
    hours: dict[int, tuple[str, str, str]] = {}
    for o in ops:
        head = _head(o, keys, gate=gate, guarded=o.guarded, always=o.always, hours=hours)
        head["o"] = _hour_keys(keys, o.hour, hours)[2]
        shared.events.append(head)
        shared.trims.update(o.trims)
    return SlotPlan(shared, {}, {}, [], [o.hour for o in ops], whole=True)


def _hour_keys(keys: RedisKeys, hour: int, made: dict[int, tuple[str, str, str]]
               ) -> tuple[str, str, str]:
    """The shared slot's seen sets of ``hour`` and the hour before, and its outbox: made
    once per hour of a batch (``made``), not per event."""
    found = made.get(hour)
    if found is None:
        found = made[hour] = (keys.seen(SHARED_TAG, hour), keys.seen(SHARED_TAG, hour - 1),
                              keys.outbox(hour))
    return found


def _head(o: Any, keys: RedisKeys, *, gate: bool, guarded: list[Op], always: list[Op],
          hours: dict[int, tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """An event's entry in the shared slot's call: its seen member and set, the ops it
    runs there, its newcomer budget and (``gate``) its item for the catalog count
    (``hours``: the batch's keys per hour, :func:`_hour_keys`)."""
    head: dict[str, Any] = {"id": o.event_id, "g": guarded, "a": always}
    if getattr(o, "copy", False):
        return head  # a forwarded copy: no seen member (the script runs its always-ops)
    # and the hour before: a retry of an event sent without a timestamp takes a later
    # receive time, which may fall after the top of the hour
    head["s"], head["p"], _ = _hour_keys(keys, o.hour, {} if hours is None else hours)
    if o.budget:
        head["b"] = o.budget
    if gate and o.item:
        head["ci"] = o.item
    return head


def _keys_of(slot: _Slot) -> list[str]:
    """Every key the slot's calls touch (checked to share one slot)."""
    found = [op_key(op) for ev in slot.events for kind in ("g", "a") for op in ev[kind]]
    found += [ev[k] for ev in slot.events for k in ("s", "p", "o") if k in ev]
    found += [ev["b"][0] for ev in slot.events if "b" in ev]
    return found + list(slot.trims)


def _calls(slot: _Slot, *, ttl: int, stats: str, gate: dict[str, Any],
           report: Sequence[str] = (), owner: str = "", now: float = 0.0,
           whole: bool = False) -> list[Call]:
    """The slot's ``APPLY_SLOT`` calls, in chunks of events (``whole``: keys of every
    slot, one standalone Redis only; the seen set's key is the one named)."""
    if whole:
        # Any key routes the call on one Redis: a seen set, else (forwarded copies only)
        # an always-op's key, else a trimmed set.
        named = [ev["s"] for ev in slot.events if "s" in ev][:1]
        named = named or [op_key(op) for ev in slot.events for op in ev["a"]][:1]
        keys = named or list(slot.trims)[:1]
    else:
        keys = _keys_of(slot)
        one_slot(keys)
    if not keys:
        return []
    calls = []
    size = WHOLE_CHUNK_EVENTS if whole else LUA_CHUNK_EVENTS
    for start in range(0, max(1, len(slot.events)), size):
        chunk = slot.events[start:start + size]
        last = start + size >= len(slot.events)
        # No copy of each entry: the script only iterates "g" and "a", and cjson decodes
        # [] and {} alike (an empty table).
        trims = [[k, n] for k, n in slot.trims.items()] if last else []
        calls.append(APPLY.call([keys[0]], [
            ttl, orjson.dumps(chunk or {}), stats, orjson.dumps(gate),
            orjson.dumps(trims or {}), orjson.dumps(list(report) if start == 0 else {}),
            owner, repr(now), repr(HANDOVER_S)]))
    return calls


def shared_calls(p: SlotPlan, keys: RedisKeys, *, ttl: int, count_applied: bool,
                 owner: str) -> list[Call]:
    """The first round trip: the shared slot's calls (every event), by writer ``owner``."""
    meta = list(keys.split("item_meta"))
    return _calls(p.shared, ttl=ttl, stats=keys.stats if count_applied else "",
                  gate={"meta": meta}, report=p.gated, owner=owner, now=time.time(),
                  whole=p.whole)


@dataclass
class SharedReply:
    """What the shared slot answered: applied events, the gate and budget counts, the
    outbox entries to apply (batch position → ``{tag: [ops]}``) and the catalogued
    items among those the always-ops need."""

    applied: int
    counts: Counter[str]
    entries: dict[int, dict[str, list[Op]]]
    known: list[str]


def read_shared(p: SlotPlan, replies: Sequence[Any]) -> SharedReply:
    """Collect the shared calls' replies (in call order)."""
    applied, counts = 0, Counter[str]()
    flat: list[Any] = []
    known: list[str] = []
    for n, reply in enumerate(replies):
        applied += int(reply[0])
        counts["uncatalogued"] += int(reply[1])
        counts["budget_cut"] += int(reply[2])
        flat.extend(reply[3] or ())
        if n == 0:
            known = [item for item, present in zip(p.gated, reply[4] or (), strict=False)
                     if int(present)]
    entries = {i: orjson.loads(raw)["x"] for i, raw in enumerate(flat) if raw}
    return SharedReply(applied, counts, entries, known)


@dataclass
class Cleanup:
    """What a batch leaves to drop once the next one runs: outbox entries (shared slot)
    and the markers of the slots that applied them."""

    outbox: dict[str, list[str]] = field(default_factory=dict)
    markers: dict[str, list[str]] = field(default_factory=dict)

    def first(self) -> list[Call]:
        """Drop the outbox entries (right after the batch, before the markers)."""
        return [command("HDEL", key, *members) for key, members in self.outbox.items()]

    def second(self) -> list[Call]:
        """Drop the markers (with the next batch)."""
        return [command("SREM", key, *members) for key, members in self.markers.items()]


def other_calls(p: SlotPlan, keys: RedisKeys, shared: SharedReply, *, ttl: int
                ) -> tuple[list[Call], Cleanup]:
    """The second round trip: every other slot's outbox entries and always-ops (gated
    by the catalog the shared slot reported), and what to clean up afterwards."""
    slots: dict[str, _Slot] = {tag: _Slot(list(s.events)) for tag, s in p.always.items()}
    cleanup = Cleanup()
    for i, entry in shared.entries.items():
        member = p.shared.events[i]["id"]
        hour = p.hours[i]
        cleanup.outbox.setdefault(keys.outbox(hour), []).append(member)
        for tag, ops in entry.items():
            marker = keys.seen(tag, hour)
            slots.setdefault(tag, _Slot()).events.append(
                {"id": member, "s": marker, "g": ops, "a": []})
            cleanup.markers.setdefault(marker, []).append(member)
    for tag, trims in p.trims.items():
        slots.setdefault(tag, _Slot()).trims.update(trims)
    gate = {"known": shared.known} if p.gated else {}
    calls = [c for slot in slots.values() for c in _calls(slot, ttl=ttl, stats="", gate=gate)]
    return calls, cleanup
