"""stream.faust_compat.recovery_ends: Faust's table recovery asks the worker's reader for
changelog end offsets (Tansu's ListOffsets answers low), and Faust itself otherwise.
No broker: the end-to-end check is tests/integration/streamrec/test_replay.py (the
tombstones of ``replay --rebuild`` reach the restarted worker)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from stream.faust_compat import recovery_ends

CHANGELOG = [TP("streamrec-user_history-changelog", p) for p in range(2)]


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    recovery_ends.set_end_offsets(None)


class Thread:
    """Stands in for Faust's consumer thread: Faust's own answer is ListOffsets'."""

    def __init__(self, in_transaction: bool = False) -> None:
        self.consumer = SimpleNamespace(in_transaction=in_transaction)

    async def _highwaters(self, partitions: Sequence[TP]) -> dict[TP, int]:
        return dict.fromkeys(partitions, 1)  # Tansu: the last batch's base offset + 1


def ask(thread: Thread) -> Any:
    return asyncio.run(recovery_ends._highwaters(thread, CHANGELOG))


def test_recovery_reads_up_to_the_readers_end_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery_ends, "_original_highwaters", Thread._highwaters)
    asked: list[list[TP]] = []

    def reader(tps: Sequence[TP]) -> dict[TP, int]:
        asked.append(list(tps))
        return dict.fromkeys(tps, 8)

    recovery_ends.set_end_offsets(reader)
    assert AIOKafkaConsumerThread._highwaters is recovery_ends._highwaters
    assert ask(Thread()) == dict.fromkeys(CHANGELOG, 8)
    assert asked == [CHANGELOG]


def test_faust_answers_when_the_reader_declines_or_in_a_transaction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery_ends, "_original_highwaters", Thread._highwaters)
    recovery_ends.set_end_offsets(lambda tps: None)  # not Tansu
    assert ask(Thread()) == dict.fromkeys(CHANGELOG, 1)
    recovery_ends.set_end_offsets(lambda tps: dict.fromkeys(tps, 8))
    assert ask(Thread(in_transaction=True)) == dict.fromkeys(CHANGELOG, 1)


def test_the_reader_asks_nothing_of_a_broker_that_is_not_tansu() -> None:
    read = recovery_ends.fetch_end_offsets({"bootstrap_servers": "127.0.0.1:1"},
                                           lambda: False)
    assert read(CHANGELOG) is None


def test_faust_recovery_still_takes_its_highwaters_from_the_patched_method() -> None:
    # The internals the patch relies on: recovery builds its highwaters through the
    # consumer's highwaters(), which calls the thread's _highwaters.
    from faust.tables.recovery import Recovery

    assert "consumer.highwaters(" in inspect.getsource(Recovery._build_highwaters)
    assert "self._highwaters" in inspect.getsource(AIOKafkaConsumerThread.highwaters)
    assert "end_offsets" in inspect.getsource(recovery_ends._original_highwaters)
