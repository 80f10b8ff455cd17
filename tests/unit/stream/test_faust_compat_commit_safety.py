"""stream.faust_compat.commit_safety: Faust's next offset to commit never passes a message
that was not acked (issue 6), and the Faust code it patches still looks as it expects."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from intervaltree import IntervalTree

from stream.faust_compat import commit_safety

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
    commit_safety.install()
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
    commit_safety.install()
    patched = Consumer._new_offset
    commit_safety.install()
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
    commit_safety.install()
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


def test_the_patched_faust_code_still_has_the_shape_the_patches_assume() -> None:
    # Tripwires for an upgrade: the attributes the patches read and the calls they
    # intercept. The patched originals are kept as __wrapped__ by functools.wraps.
    commit_safety.install()
    new_offset_src = inspect.getsource(inspect.unwrap(Consumer._new_offset))
    assert "_committed_offset" in new_offset_src and "_acked" in new_offset_src
    for name in ("_resume_streams", "on_recovery_completed"):
        resume_src = inspect.getsource(inspect.unwrap(getattr(Recovery, name)))
        assert "resume_partitions" in resume_src and "flow_control.resume" in resume_src
    fetch_src = inspect.getsource(inspect.unwrap(AIOKafkaConsumerThread._fetch_records))
    assert "fetched_records" in fetch_src and "active_partitions" in fetch_src
