"""stream.backlog: how far behind the log the worker is (from the consumer's memory), and
a batch cut into steps at message boundaries."""

from __future__ import annotations

from typing import Any

from faust.types import TP

from stream.backlog import backlog_messages, partition_lags, steps


class Consumer:
    """The three things the functions read of Faust's consumer."""

    def __init__(self, highwaters: dict[TP, int | None], read: dict[TP, int]) -> None:
        self._highwaters = highwaters
        self._read_offset = read

    def assignment(self) -> set[TP]:
        return set(self._highwaters)

    def highwater(self, tp: TP) -> Any:
        return self._highwaters[tp]


def test_backlog_counts_messages_beyond_the_batch_or_the_last_delivered_one() -> None:
    consumer = Consumer({TP("events", 0): 100, TP("events", 1): 50, TP("events", 2): None,
                         TP("catalog", 0): 9}, {TP("events", 1): 39})
    # Partition 0: the batch ended at 80; partition 1: last delivered 39; 2: not fetched.
    assert backlog_messages(consumer, "events", {0: 80}) == 20 + 10
    lags = {tp.partition: lag for tp, lag in partition_lags(consumer, ("events",))}
    assert lags == {0: 100, 1: 10}


def test_steps_cut_at_message_boundaries() -> None:
    messages = [[1, 2], [3], [4, 5, 6, 7], [8]]
    assert list(steps(messages, 3)) == [[1, 2, 3], [4, 5, 6, 7], [8]]
    assert list(steps(messages, 100)) == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert list(steps([], 3)) == []
