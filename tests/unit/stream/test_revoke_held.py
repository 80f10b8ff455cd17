"""A history changelog record held while Faust rebalances is held back, not sent: the
revoke waits for the batch, the assignor still answers the old assignment, and a copy
sent after the group gave the partition to another worker could land after the new
owner's records (``stream.deliveries``). Its batch's source partition is withheld from
commits until the record is in Kafka or the partition has moved, so the batch is read
again by whoever owns it next (``stream.faust_compat.commit_safety.set_withheld``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.transport.consumer import Consumer
from faust.types import TP

from stream import deliveries
from stream.deliveries import GONE, MINE, UNSURE, Held, SendWatch, hold_back, owner_of
from stream.faust_compat import commit_safety

CHANGELOG, SOURCE = "t-changelog", "t-events"


@pytest.fixture(autouse=True)
def _no_fence_left() -> Iterator[None]:
    commit_safety.set_withheld(set())
    yield
    commit_safety.set_withheld(set())


def _held(key: bytes, value: bytes | None, partition: int | None = 0,
          topic: str = CHANGELOG) -> Held:
    return Held(topic, key, value, partition, None, None, "KafkaTimeoutError")


def _app(*, rebalancing: bool, active: set[int]) -> SimpleNamespace:
    assignor = SimpleNamespace(is_active=lambda tp: tp.partition in active)
    return SimpleNamespace(rebalancing=rebalancing, assignor=assignor)


class Producer:
    """Acknowledges every send, except the first ``refuse`` ones, which time out and
    (``begin``) start a rebalance, as a revoke arriving mid-settle would."""

    def __init__(self, app: SimpleNamespace, refuse: int = 0) -> None:
        self.app, self.refuse, self.sent = app, refuse, []  # type: ignore[var-annotated]
        self.buffer = SimpleNamespace(size=0)

    async def flush(self) -> None:
        return None

    async def send_and_wait(self, topic: str, key: bytes, value: bytes | None,
                            **kw: Any) -> None:
        if self.refuse:
            self.refuse -= 1
            self.app.rebalancing = True
            raise KafkaTimeoutError()
        self.sent.append((topic, key, value, kw["partition"]))


def _watch(app: SimpleNamespace, table: dict[bytes, bytes]) -> SendWatch:
    watch = SendWatch()
    watch.current[CHANGELOG] = table.get
    watch.sources[CHANGELOG] = SOURCE
    watch.owner = partial(owner_of, app)  # type: ignore[arg-type]
    return watch


def test_nobody_owns_a_partition_while_faust_rebalances() -> None:
    assert owner_of(_app(rebalancing=True, active={0}), CHANGELOG, 0) == UNSURE  # type: ignore[arg-type]
    assert owner_of(_app(rebalancing=False, active={0}), CHANGELOG, 0) == MINE  # type: ignore[arg-type]
    assert owner_of(_app(rebalancing=False, active={1}), CHANGELOG, 0) == GONE  # type: ignore[arg-type]
    assert owner_of(_app(rebalancing=True, active=set()), SOURCE, None) == MINE  # type: ignore[arg-type]


def test_only_changelog_records_of_unsure_partitions_are_held_back() -> None:
    held = [_held(b'"a"', b"v", 0), _held(b"u1", b"fwd", None, SOURCE),
            _held(b'"b"', b"v", 1)]
    owner = {0: UNSURE, 1: MINE}
    now, later = hold_back(held, {CHANGELOG: {}.get},
                           lambda topic, p: owner.get(p, MINE))  # type: ignore[arg-type]
    assert later == held[:1]
    assert now == held[1:]


def test_a_revoke_during_settle_holds_the_record_back_and_withholds_its_offsets(
        monkeypatch: Any) -> None:
    """The reported case: the batch's record is refused, a revoke begins while settle
    sends it again; settle returns (the revoke is not blocked), nothing of the changelog
    is sent, the forward is, and partition 0 of the source is not committed."""
    monkeypatch.setattr(deliveries, "RETRY_MIN_S", 0.0)
    app = _app(rebalancing=False, active={0})
    app.producer = Producer(app, refuse=1)
    watch = _watch(app, {b'"u1"': b"v2"})
    watch.held += [_held(b'"u1"', b"v1"), _held(b"u1", b"fwd", None, SOURCE)]
    asyncio.run(asyncio.wait_for(deliveries.settle(app, watch, what="a batch"), 60))
    assert app.producer.sent == [(SOURCE, b"u1", b"fwd", None)]
    assert [h.key for h in watch.deferred] == [b'"u1"'] and watch.held == []
    assert commit_safety.withheld() == {(SOURCE, 0)}


def test_a_partition_kept_sends_the_value_now_then_commits_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(deliveries, "RETRY_MIN_S", 0.0)
    app = _app(rebalancing=True, active={0})
    app.producer = Producer(app)
    table = {b'"u1"': b"v2"}
    watch = _watch(app, table)
    watch.held.append(_held(b'"u1"', b"v1"))
    asyncio.run(deliveries.settle(app, watch, what="a batch"))
    assert app.producer.sent == [] and commit_safety.withheld() == {(SOURCE, 0)}

    app.rebalancing = False  # Faust: on_rebalance_end, partition 0 still here
    table[b'"u1"'] = b"v3"  # the batch read again (a no-op) or a newer one
    watch.on_rebalance_end(app, {})
    assert commit_safety.withheld() == {(SOURCE, 0)}  # until Kafka has the record
    asyncio.run(deliveries.settle(app, watch, what="the next batch"))
    assert app.producer.sent == [(CHANGELOG, b'"u1"', b"v3", 0)]
    assert commit_safety.withheld() == set() and watch.deferred == []


def test_a_partition_moved_drops_the_record_and_lets_go_of_the_fence(
        monkeypatch: Any) -> None:
    monkeypatch.setattr(deliveries, "RETRY_MIN_S", 0.0)
    app = _app(rebalancing=True, active={0})
    app.producer = Producer(app)
    watch = _watch(app, {b'"u1"': b"stale"})
    watch.held.append(_held(b'"u1"', b"v1"))
    asyncio.run(deliveries.settle(app, watch, what="a batch"))
    app.rebalancing, app.assignor.is_active = False, lambda tp: False
    watch.on_rebalance_end(app, {})
    asyncio.run(deliveries.settle(app, watch, what="the next batch"))
    assert app.producer.sent == []
    assert commit_safety.withheld() == set() and watch.held == watch.deferred == []


def test_a_withheld_partition_commits_nothing_until_released() -> None:
    """Faust's wait_empty commits the batches acked during a revoke (the broker accepts
    until the group moves on): a withheld partition's acked batch is not among them."""
    commit_safety.install()
    tp = TP(SOURCE, 0)
    state = SimpleNamespace(
        _committed_offset=defaultdict(lambda: None, {tp: 10}),
        _acked=defaultdict(list, {tp: [10, 11, 12]}),
        _acked_index=defaultdict(set, {tp: {10, 11, 12}}), _gap=defaultdict(list))
    commit_safety.set_withheld({(SOURCE, 0)})
    assert Consumer._new_offset(state, tp) is None
    commit_safety.set_withheld(set())
    assert Consumer._new_offset(state, tp) == 13


def test_the_watch_hears_faust_s_rebalance_end() -> None:
    """Faust calls sensors' ``on_rebalance_end(app, state)`` after the new assignment
    and its recovery (``SensorDelegate.on_rebalance_end``)."""
    from faust.sensors.base import SensorDelegate

    delegate = SensorDelegate(SimpleNamespace())  # type: ignore[arg-type]
    watch = SendWatch()
    watch.deferred.append(_held(b'"u1"', b"v1"))
    delegate._sensors.add(watch)  # noqa: SLF001 (add() wires a real app's beacon)
    delegate.on_rebalance_end(SimpleNamespace(), delegate.on_rebalance_start(SimpleNamespace()))  # type: ignore[arg-type]
    assert [h.key for h in watch.held] == [b'"u1"'] and watch.deferred == []


def test_faust_still_flags_the_rebalance_as_this_module_reads_it() -> None:
    """The Faust facts the hold-back relies on: ``rebalancing`` is set before the revoke
    and cleared before the sensors hear the end; the revoke commits what was acked
    through ``_new_offset`` (where the fence is)."""
    import inspect

    import faust

    start = inspect.getsource(faust.App.on_rebalance_start)
    end = inspect.getsource(faust.App.on_rebalance_end)
    assert "self.rebalancing = True" in start
    assert end.index("self.rebalancing = False") < end.index("sensors.on_rebalance_end")
    revoke = inspect.getsource(faust.App._on_partitions_revoked)
    assert revoke.index("_consumer_wait_empty") < revoke.index("on_partitions_revoked.send")
    assert "_new_offset" in inspect.getsource(Consumer._filter_committable_offsets)
