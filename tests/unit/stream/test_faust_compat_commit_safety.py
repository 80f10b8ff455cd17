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
    verify_src = inspect.getsource(inspect.unwrap(AIOKafkaConsumerThread.verify_event_path))
    assert "tp_state.position" in verify_src


class ResumingConsumer:
    """The consumer calls the resume wrapper makes: which partitions were resumed."""

    def __init__(self, assignment: set[TP]) -> None:
        self.resumed: list[set[TP]] = []
        self._assignment = assignment

    def resume_partitions(self, tps: Any) -> None:
        self.resumed.append(set(tps))

    def assignment(self) -> set[TP]:
        return self._assignment


def test_a_recovery_begun_during_the_seek_still_resumes_its_changelogs() -> None:
    """While ``on_recovery_completed`` of generation 1 awaits its seek, a rebalance
    starts generation 2, whose recovery resumes its changelog partitions: that call was
    held with the sources and dropped (generation 1 was over), so the changelogs stayed
    paused and the recovery read nothing for minutes."""
    commit_safety.install()
    changelog, source = TP("app-table-changelog", 0), TP("events", 0)
    consumer = ResumingConsumer({changelog, source})
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=1)

    async def original(self: Any, generation_id: int = 0) -> None:
        consumer.resume_partitions({source})  # Faust's own call: held until the end
        await asyncio.sleep(0)  # the seek; meanwhile another task runs
        await asyncio.sleep(0)

    async def new_recovery() -> None:
        app.consumer_generation_id = 2
        consumer.resume_partitions({changelog})

    wrapped = commit_safety._resume_sources_last(original)
    recovery = SimpleNamespace(app=app, _is_changelog_tp=lambda tp: tp.topic.endswith(
        "-changelog"))

    async def run() -> None:
        await asyncio.gather(wrapped(recovery, generation_id=1), new_recovery())

    asyncio.run(run())
    assert consumer.resumed == [{changelog}]  # the sources of generation 1 were dropped
    assert "resume_partitions" not in vars(consumer)


def test_overlapping_resumes_leave_no_shadow_and_raise_nothing() -> None:
    commit_safety.install()
    source = TP("events", 0)
    consumer = ResumingConsumer({source})
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=3)
    recovery = SimpleNamespace(app=app, _is_changelog_tp=lambda tp: False)
    gate = asyncio.Event()

    async def slow(self: Any, generation_id: int = 0) -> None:
        consumer.resume_partitions({source})
        await gate.wait()

    async def quick(self: Any, generation_id: int = 0) -> None:
        consumer.resume_partitions({source})
        gate.set()

    async def run() -> None:
        await asyncio.gather(commit_safety._resume_sources_last(slow)(recovery, 3),
                             commit_safety._resume_sources_last(quick)(recovery, 3))

    asyncio.run(run())
    assert "resume_partitions" not in vars(consumer)
    assert consumer.resumed == [{source}, {source}]


def _thread_with(state: Any) -> Any:
    """A consumer thread whose aiokafka assignment holds ``state`` for every partition."""
    assignment = SimpleNamespace(state_value=lambda tp: state)
    subscriptions = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=subscriptions))
    return SimpleNamespace(_ensure_consumer=lambda: consumer)


def test_the_livelock_detector_skips_a_partition_awaiting_its_offset() -> None:
    """The cluster chaos test: a broker down while a new worker sought a partition to its
    start; Faust's detector read aiokafka's ``position`` (asserted set) and the worker
    died in AssertionError. Such a partition is skipped; the others are checked."""
    commit_safety.install()
    # aiokafka's TopicPartitionState after seek_to_beginning: no position until the
    # leader answers (its ``position`` property asserts one)
    waiting = SimpleNamespace(has_valid_position=False)
    checked: list[Any] = []
    original = inspect.unwrap(AIOKafkaConsumerThread.verify_event_path)
    wrapped = commit_safety._skip_unpositioned(lambda self, now, tp: checked.append(tp))
    wrapped(_thread_with(waiting), 1.0, TOPIC_P0)
    assert checked == []
    wrapped(_thread_with(SimpleNamespace(has_valid_position=True)), 1.0, TOPIC_P0)
    assert checked == [TOPIC_P0]
    assert commit_safety.position_known(SimpleNamespace(_ensure_consumer=lambda: None),
                                        TOPIC_P0)  # unreadable state: Faust's own check
    assert AIOKafkaConsumerThread.verify_event_path is not original  # installed
