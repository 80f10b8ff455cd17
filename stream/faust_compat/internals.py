"""Faust internals the worker reads or sets without patching them.

Two things the worker needs have no public API in Faust 0.15:

* **Which partition a table write's changelog record goes to.** A table write goes to
  the changelog partition of the *current event* (a context variable Faust sets while
  an agent handles a message). The worker applies a whole batch at once, after the
  loop that set it, so :func:`current_event` sets it to the batch's message of the
  right source partition around each write.
* **The consumer's read position**, for the lag metric: :func:`read_offset`.
* **Forgetting a key here only.** Faust drops, after a rebalance, the keys it restored
  from partitions this worker lost, but not the keys the worker wrote itself: those stay
  until a restart. :func:`drop_local` removes one from the in-memory store without a
  changelog tombstone (the partition's new owner holds it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust.streams as _streams


@contextmanager
def current_event(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event inside the block (table writes then send
    their changelog records to ``event.message.partition``)."""
    token = _streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _streams._current_event.reset(token)


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The offset of the last message the consumer handed to a stream for ``tp``
    (None before the first one)."""
    value = consumer._read_offset.get(tp)
    return None if value is None else int(value)


class _Message:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _PartitionEvent:
    """What Faust reads of the current event to route a table write's changelog."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


def partition_event(topic: str, partition: int) -> Any:
    """A stand-in current event for a table write outside a batch (a timer's), whose
    changelog record must go to ``partition`` of the source ``topic``; keep it
    referenced for the duration of the :func:`current_event` block."""
    return _PartitionEvent(topic, partition)


def drop_local(table: Any, key: Any) -> None:
    """Remove ``key`` from ``table``'s in-memory store (Faust's ``memory://``) only: no
    changelog record, so the worker that owns the key's partition now keeps it."""
    store = table.data
    store.data.pop(key, None)
    getattr(store, "_key_partition", {}).pop(key, None)
