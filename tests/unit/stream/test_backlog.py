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


class Committing(Consumer):
    """A consumer that counts its commits."""

    commits = 0

    async def commit(self) -> bool:
        self.commits += 1
        return True


async def test_a_worker_that_caught_up_commits_at_once_and_once_per_catch_up() -> None:
    """Behind a while ago, nothing fetched left: commit now (``status`` shows lag 0 at the
    catch-up's end, not at Faust's next commit tick); not again for the same catch-up,
    not while fetched messages wait, never for a worker that was not behind."""
    from stream.backlog import commit_caught_up

    tp = TP("events", 0)
    waiting = Committing({tp: 100}, {tp: 89})
    assert await commit_caught_up(waiting, "events", 5.0, float("-inf")) == float("-inf")
    done = Committing({tp: 100}, {tp: 99})
    assert await commit_caught_up(done, "events", None, float("-inf")) == float("-inf")
    assert done.commits == 0
    committed = await commit_caught_up(done, "events", 5.0, float("-inf"))
    assert (committed, done.commits) == (5.0, 1)
    assert await commit_caught_up(done, "events", 5.0, committed) == 5.0
    assert done.commits == 1  # the same catch-up
    assert await commit_caught_up(done, "events", 9.0, committed) == 9.0
    assert done.commits == 2  # a later one
    assert waiting.commits == 0


async def test_a_failed_commit_at_a_catch_ups_end_is_left_to_fausts_tick() -> None:
    from stream.backlog import commit_caught_up

    class Failing(Consumer):
        async def commit(self) -> bool:
            raise RuntimeError("broker away")

    tp = TP("events", 0)
    assert await commit_caught_up(Failing({tp: 10}, {tp: 9}), "events", 5.0, 1.0) == 1.0
