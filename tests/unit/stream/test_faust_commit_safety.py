"""Faust's next-offset-to-commit never passes a message that was not acked (issue 6)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from intervaltree import IntervalTree

from stream import faust_commit_safety

TOPIC_P0 = TP("events", 0)


class Offsets:
    """The bookkeeping attributes ``Consumer._new_offset`` reads, and nothing else."""

    def __init__(self, committed: int | None, acked: list[int],
                 gaps: tuple[tuple[int, int], ...] = ()) -> None:
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset[TOPIC_P0] = committed
        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._acked[TOPIC_P0] = list(acked)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._acked_index[TOPIC_P0] = set(acked)
        self._gap: dict[TP, IntervalTree] = defaultdict(IntervalTree)
        for begin, end in gaps:
            self._gap[TOPIC_P0].addi(begin, end)


def new_offset(state: Any) -> int | None:
    faust_commit_safety.install()
    return Consumer._new_offset(state, TOPIC_P0)


def test_a_one_message_hole_at_the_committed_offset_blocks_the_commit() -> None:
    # Committed 97 means "97 is the next to process"; 98.. acked but 97 never was.
    # Stock Faust answers 101 here (its check is `min(acked) - committed > 1`).
    assert new_offset(Offsets(97, [98, 99, 100])) is None


def test_contiguous_acks_from_the_committed_offset_commit() -> None:
    assert new_offset(Offsets(97, [97, 98, 99])) == 100
    assert new_offset(Offsets(97, [97, 98, 100])) == 99


def test_a_gap_range_counts_as_done() -> None:
    # Faust's own gap ranges (offsets the broker never returned) still let it advance.
    assert new_offset(Offsets(97, [99, 100], gaps=((97, 99),))) == 101


def test_first_commit_and_nothing_acked_are_unchanged() -> None:
    assert new_offset(Offsets(None, [5, 6])) == 7
    assert new_offset(Offsets(97, [])) is None


def test_install_is_idempotent() -> None:
    faust_commit_safety.install()
    patched = Consumer._new_offset
    faust_commit_safety.install()
    assert Consumer._new_offset is patched


class Fetcher:
    """The parts of aiokafka's fetcher Faust's ``_fetch_records`` touches."""

    _closed = False

    def __init__(self) -> None:
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)
        self.asked: list[Any] = []

    async def fetched_records(self, partitions: Any, timeout: float | None = None,
                              max_records: int | None = None) -> dict[Any, Any]:
        self.asked.append(partitions)
        return {tp: ["record"] for tp in partitions}


def fetch(active: set[TP]) -> tuple[Any, Fetcher]:
    faust_commit_safety.install()
    fetcher = Fetcher()
    thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
    consumer = SimpleNamespace(_closed=False, _fetcher=fetcher)
    records = asyncio.run(AIOKafkaConsumerThread._fetch_records(
        thread, consumer, active, timeout=0.0, max_records=10))  # type: ignore[arg-type]
    return records, fetcher


def test_no_active_partitions_fetches_nothing() -> None:
    # aiokafka reads an empty partition set as "all partitions": it would hand over (and
    # advance past) records of paused partitions, which Faust then drops.
    records, fetcher = fetch(set())
    assert records == {} and fetcher.asked == []


def test_active_partitions_are_passed_as_a_snapshot() -> None:
    active = {TOPIC_P0}
    records, fetcher = fetch(active)
    assert records == {TOPIC_P0: ["record"]}
    assert fetcher.asked == [active] and fetcher.asked[0] is not active
