"""The history table's TTL (``stream.history_expiry``) over a dict standing in for the
Faust table: the stamps, what is expired, and the sweep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.history_expiry import (
    EXPIRES,
    PARTITION,
    LegacyExpiry,
    advance,
    drop_expired,
    expired,
    stamped,
    sweep_expired,
)

T = 1_700_000_000.0
BOUNDS = StateBounds(entity_ttl_s=1000, anonymous_ttl_s=100)


def view(**ids: Any) -> TopicEvent:
    return TopicEvent(event_id="e", type="view", item_id="i", ts=T, received_at=T, **ids)


def test_stamps_follow_the_newest_receive_time_and_the_entity_kind() -> None:
    user = stamped({}, [view(user_id="u")], BOUNDS, 3)
    assert user == {EXPIRES: int(T) + 1000, PARTITION: 3}
    anon = stamped({}, [view(anonymous_id="a")], BOUNDS, 1)
    assert anon[EXPIRES] == int(T) + 100
    identify = TopicEvent(event_id="i", type="identify", anonymous_id="a", user_id="u",
                          ts=T + 50, received_at=T + 50)
    # the identify is the anonymous id's event: the anonymous TTL, from the newest time
    assert stamped({}, [view(anonymous_id="a"), identify], BOUNDS, 1)[EXPIRES] == \
        int(T) + 150


def test_only_expired_values_of_owned_partitions() -> None:
    items = [("old", {EXPIRES: 10, PARTITION: 0}), ("fresh", {EXPIRES: 30, PARTITION: 0}),
             ("theirs", {EXPIRES: 10, PARTITION: 1}), ("unstamped", {"entries": []}),
             ("odd", {EXPIRES: "10", PARTITION: 0}), ("none", None)]
    assert expired(items, 20, {0}) == [("old", 0)]


def test_a_replay_drops_values_past_the_clock_of_their_own_partition() -> None:
    values: dict[str, Any] = {
        "old": {EXPIRES: 10, PARTITION: 0}, "fresh": {EXPIRES: 30, PARTITION: 0},
        "behind": {EXPIRES: 10, PARTITION: 1}, "unread": {EXPIRES: 10, PARTITION: 2},
        "unstamped": {"entries": []}, "none": None}
    # partition 1's clock has not passed its value's expiry; partition 2 has no clock
    assert drop_expired(values, {0: 20.0, 1: 5.0}) == 1
    assert set(values) == {"fresh", "behind", "unread", "unstamped", "none"}


class _Table(dict[str, Any]):
    """A dict that records the Faust current event of each deletion."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.routed: list[int] = []

    def __delitem__(self, key: str) -> None:
        from faust.streams import current_event

        event = current_event()
        assert event is not None  # Faust would refuse the write outside a stream
        self.routed.append(event.message.partition)
        super().__delitem__(key)


def test_the_sweep_deletes_each_on_its_partition() -> None:
    table = _Table({f"a{i}": {EXPIRES: 10, PARTITION: i % 2} for i in range(5)})
    table["live"] = {EXPIRES: 99, PARTITION: 0}
    removed = asyncio.run(sweep_expired(table, "events", {0, 1}, 20, chunk=2))
    assert removed == 5 and list(table) == ["live"]
    assert sorted(table.routed) == [0, 0, 0, 1, 1]


def test_values_of_an_older_version_expire_from_their_newest_receipt() -> None:
    # 0cb3bfc wrote no stamp: such a value stayed for good, however long its entity had
    # been gone. It expires with the longer TTL after its newest receive time, on the
    # partition its key hashes to (where its events and changelog records went).
    from core.kafka_tools import partition_of

    legacy = LegacyExpiry(ttl_s=1000, partitions=4)
    gone = {"entries": [["e1", "i", "view", T - 50, T], ["e2", "i", "view", T - 10]]}
    back = {"entries": [["e3", "i", "view", T - 5000, T + 900]]}
    received = {"entries": [], "received": T, "links": ["u1"], "alias": "u1"}
    items = [("gone", gone), ("back", back), ("linked", received),
             ("timeless", {"entries": []}), ("stamped", {PARTITION: 0}),
             ("odd", {"entries": [["e", "i", "view", "T"]]})]
    owned = set(range(4))
    assert expired(items, T + 1000.5, owned, legacy) == [
        ("gone", partition_of(b"gone", 4)), ("linked", partition_of(b"linked", 4))]
    assert expired(items, T + 999, owned, legacy) == []
    assert expired(items, T + 1000.5, owned) == []  # without the rule: as before
    # Another worker's partition: that worker's to delete.
    mine = {partition_of(b"linked", 4)}  # not gone's
    assert expired(items, T + 1000.5, mine, legacy) == [
        ("linked", partition_of(b"linked", 4))]


def test_the_sweep_deletes_old_values_on_their_keys_partition() -> None:
    from core.kafka_tools import partition_of

    table = _Table({"old": {"entries": [["e1", "i", "view", T]]},
                    "new": {"entries": [["e2", "i", "view", T]], EXPIRES: int(T) + 10**6,
                            PARTITION: 1}})
    legacy = LegacyExpiry(ttl_s=100, partitions=4)
    removed = asyncio.run(sweep_expired(table, "events", set(range(4)), T + 101,
                                        legacy=legacy))
    assert removed == 1 and list(table) == ["new"]
    assert table.routed == [partition_of(b"old", 4)]


def test_the_sweep_stops_when_a_rebalance_starts() -> None:
    table = _Table({f"a{i}": {EXPIRES: 10, PARTITION: 0} for i in range(6)})
    calls: list[int] = []

    def halt() -> bool:  # a rebalance begins after the first chunk
        calls.append(1)
        return len(calls) > 1
    removed = asyncio.run(sweep_expired(table, "events", {0}, 20, chunk=2, halt=halt))
    assert removed == 2 and len(table) == 4


class _SlowLegacy(LegacyExpiry):
    """Values of an older version: their expiry costs a scan of their entries and
    receipts (~0.1 ms for a full history on a shared core); 2 ms here."""

    def __call__(self, entity: str, value: dict[str, Any]) -> tuple[Any, Any]:
        import time

        time.sleep(0.002)
        return super().__call__(entity, value)


def test_the_sweep_yields_by_time_not_only_by_count() -> None:
    """A chunk of 2,000 values of an older version held the event loop (the batches, the
    heartbeat) for a quarter to half a second per chunk; the sweep now also yields once
    it has run for a few milliseconds."""
    import time

    table = _Table({f"a{i}": {"entries": [["e", "i", "view", T, T]]} for i in range(300)})
    gaps: list[float] = []

    async def run() -> int:
        done = False

        async def tick() -> None:
            last = time.monotonic()
            while not done:
                await asyncio.sleep(0)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        removed = await sweep_expired(table, "events", {0}, T + 1e9,
                                      legacy=_SlowLegacy(100, 1))
        done = True
        await ticker
        return removed

    assert asyncio.run(run()) == 300 and not table
    assert max(gaps) < 0.25  # 300 × 2 ms = 0.6 s in one go before


def test_a_backfill_counts_from_when_it_is_applied() -> None:
    """``streamrec load --via kafka`` writes events received at their own (old) time: the
    histories were stamped long expired and swept minutes after the load, while the
    shoppers' Redis keys live a TTL from the write."""
    old = TopicEvent(event_id="b", type="view", item_id="i", user_id="u", ts=T,
                     received_at=T, backfill=True)
    before = time.time()
    at = stamped({}, [old], BOUNDS, 0)[EXPIRES]
    assert int(before) + 1000 <= at <= time.time() + 1000
    # a live event keeps its receive time: a replay stamps it the same
    assert stamped({}, [view(user_id="u")], BOUNDS, 0)[EXPIRES] == int(T) + 1000


def test_a_partition_expires_nothing_past_its_clock() -> None:
    """A worker back after days away (or a replay) reads its backlog oldest first: by the
    wall clock alone, a history whose newer events still wait there was deleted, and
    those events then started it from nothing."""
    clocks: dict[int, float] = {}
    advance(clocks, [(view(user_id="u"), 0), (view(user_id="v"), 0)])
    assert clocks == {0: T}
    items = [("behind", {EXPIRES: int(T) + 10, PARTITION: 0}),
             ("passed", {EXPIRES: int(T) - 10, PARTITION: 0}),
             ("unread", {EXPIRES: 10, PARTITION: 1})]
    assert expired(items, T + 10**9, {0, 1}, clocks=clocks) == [("passed", 0)]
    assert expired(items, T - 20, {0, 1}, clocks=clocks) == []  # the wall clock too
def test_stamps_take_the_newest_time_and_any_anonymous_event_in_any_order() -> None:
    # stamped() runs for every history written: one plain pass, the same stamp as
    # any()/max() over the events gave
    late = TopicEvent(event_id="l", type="view", item_id="i", user_id="u", ts=T + 9,
                      received_at=T + 9)
    anon = TopicEvent(event_id="a", type="view", item_id="i", anonymous_id="a", ts=T - 5,
                      received_at=T - 5)
    assert stamped({}, [view(user_id="u"), late, view(user_id="u")], BOUNDS, 0)[EXPIRES] \
        == int(T) + 9 + 1000
    assert stamped({}, [late, anon], BOUNDS, 0)[EXPIRES] == int(T) + 9 + 100
    assert stamped({}, [], BOUNDS, 2) == {EXPIRES: 1000, PARTITION: 2}  # no event: 0 + a user's


def test_the_sweep_lets_go_of_histories_of_partitions_now_elsewhere() -> None:
    """A worker kept the histories it wrote of partitions a rebalance moved to another
    worker until it restarted (Faust drops only the keys it restored): the sweep hands
    them to ``drop`` (out of memory, no tombstone), those of an older version by their
    key's partition; values of owned partitions stay, expired ones are deleted."""
    from core.kafka_tools import partition_of

    mine, theirs = partition_of(b"old-mine", 4), partition_of(b"old-theirs", 4)
    assert mine != theirs
    table = _Table({"kept": {EXPIRES: 99, PARTITION: mine}, "gone": {EXPIRES: 10, PARTITION: mine},
                    "moved": {EXPIRES: 99, PARTITION: theirs},
                    "old-mine": {"entries": [["e", "i", "view", 15, 15]]},
                    "old-theirs": {"entries": [["e", "i", "view", 15, 15]]}, "odd": None})
    let_go: list[str] = []
    removed = asyncio.run(sweep_expired(table, "events", {mine}, 20, chunk=2,
                                        legacy=LegacyExpiry(ttl_s=1000, partitions=4),
                                        drop=let_go.append))
    assert removed == 1 and table.routed == [mine]  # "gone": expired, so a tombstone
    assert sorted(let_go) == ["moved", "old-theirs"]
    assert {"kept", "old-mine", "odd"} <= set(table)


def test_a_worker_given_no_partition_lets_go_of_every_history() -> None:
    """More workers than partitions: a worker that owned some before the rebalance kept
    every history it wrote, since an empty assignment let nothing go. It now lets go of
    all once Faust's assignor agrees it holds none; an assignment read empty while the
    assignor still lists partitions keeps everything."""
    from types import SimpleNamespace

    import faust

    from stream.faust_compat.internals import current_event, partition_event
    from stream.history_expiry import expire_owned

    async def run(actives: set[Any]) -> list[str]:
        app = faust.App(f"expiry-{len(actives)}", broker="kafka://127.0.0.1:1",
                        store="memory://", web_enabled=False)
        table = app.Table("h", default=None, partitions=4)
        table.send_changelog = lambda p, *a, **k: SimpleNamespace(  # type: ignore[method-assign]
            message=SimpleNamespace(partition=p))
        with current_event(partition_event("events", 1)):
            table["a"] = {EXPIRES: int(T) + 10**9, PARTITION: 1}
            table["b"] = {EXPIRES: int(T) + 10**9, PARTITION: 1}
        fake = SimpleNamespace(
            rebalancing=False, in_recovery=False, rebalancing_count=3,
            consumer=SimpleNamespace(assignment=lambda: set(),
                                     topic_partitions=lambda _t: 4),
            assignor=SimpleNamespace(assigned_actives=lambda: actives))
        await expire_owned(table, fake, "events", BOUNDS, 4, {})
        return sorted(table.keys())

    from faust.types import TP
    from prometheus_client import REGISTRY

    def held() -> float | None:
        return REGISTRY.get_sample_value("streamrec_histories_held")
    assert asyncio.run(run(set())) == []
    assert held() == 0  # the gauge follows the table: what this worker holds now
    assert asyncio.run(run({TP("events", 1)})) == ["a", "b"]
    assert held() == 2
