"""How far behind the log the worker is, and a batch cut into steps.

The worker lets lists wait (:class:`recommender.coalesce.Coalescer`) only while it is
behind: more events are waiting beyond the batch at hand than ``coalesce_backlog``. That
is read from memory at each step of a batch, with no request: per assigned partition, the
fetch high watermark the consumer last saw minus the next offset after this batch (or
after the last message delivered, for partitions without one in it), in messages,
times the events per message of the batch. A worker that was behind commits its offsets
as soon as it has handled all it fetched (:func:`commit_caught_up`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from stream.faust_compat.internals import read_offset

T = TypeVar("T")
log = logging.getLogger("streamrec.worker")


def partition_lags(consumer: Any, topics: Collection[str],
                   next_offsets: Mapping[int, int] | None = None) -> Iterator[tuple[Any, int]]:
    """``(tp, messages)`` for every assigned partition of ``topics`` whose fetch high
    watermark is known (right on Tansu, unlike ListOffsets "latest"): the messages beyond
    the next offset to process, ``next_offsets[partition]`` when given, else the one after
    the last message the consumer delivered. In memory, no I/O."""
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched yet / partition revoked
            continue
        if high is None:
            continue
        nxt = next_offsets.get(tp.partition) if next_offsets is not None else None
        if nxt is None:
            read = read_offset(consumer, tp)
            nxt = read + 1 if read is not None else 0
        yield tp, max(0, int(high) - nxt)


def backlog_messages(consumer: Any, topic: str, next_offsets: Mapping[int, int]) -> int:
    """Messages of ``topic``'s assigned partitions beyond ``next_offsets`` (partition →
    next offset to process), from what the consumer last fetched; no I/O."""
    return sum(lag for _, lag in partition_lags(consumer, (topic,), next_offsets))


async def commit_caught_up(consumer: Any, topic: str, behind_at: float | None,
                           committed_for: float) -> float:
    """Commit the acked offsets once a worker that was behind (its last step that found a
    backlog at ``behind_at``, monotonic) has no fetched message of ``topic`` left, not at
    Faust's next commit tick (up to ``broker_commit_interval`` later): ``streamrec
    status`` shows lag 0 when a burst or a replay is through (the burst bench saw it
    0.2-0.9 s after the workers' last write before). Once per catch-up: ``committed_for``
    is the ``behind_at`` of the last one committed; returns the new one. A commit that
    fails is left to Faust's tick (the finisher that calls this must not fail for it)."""
    if behind_at is None or behind_at <= committed_for or backlog_messages(
            consumer, topic, {}):
        return committed_for
    try:
        await consumer.commit()
    except Exception as exc:  # noqa: BLE001 - Faust's commit tick commits them later
        log.warning("committing at the end of a catch-up failed (%r); Faust's commit "
                    "tick commits these offsets", exc)
        return committed_for
    return behind_at


def steps(messages: Sequence[Sequence[T]], most: int) -> Iterator[list[T]]:
    """The items of ``messages`` (each message a sequence of items) in order, cut into
    steps of at most ``most`` items at message boundaries (a larger message is a step of
    its own)."""
    step: list[T] = []
    for items in messages:
        if step and len(step) + len(items) > most:
            yield step
            step = []
        step.extend(items)
    if step:
        yield step
