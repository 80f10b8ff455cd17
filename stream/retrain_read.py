"""Reading the ``events`` log into the rows the full retrain's matrix is built from.

Decoding and validating a million events is most of a retrain's read and runs one core
flat out, so a large log is read by several forked processes at once, each taking every
``n``-th partition and sending its rows back in chunks. The rows come out in one fixed
order whatever the number of processes (partition by partition in partition order, each
in offset order): the matrix, and so the seeded ALS fit, is the same either way. A small
log is read in this process: forking and a consumer per process cost more than they save.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

from core.kafka_tools import high_watermarks, read_partitions
from core.settings import Settings
from recommender.interactions import EventRow
from schemas import TopicEvent
from schemas.events import dedupe_namespace
from schemas.topic_plain import PlainEvent, plain_events
from stream.decode import PoisonMessage, decode_events
from stream.forget import dropped, dropped_fields, read_forgotten

#: Rows per message from a reading process to the retrain (and most records read
#: between two progress reports).
CHUNK_ROWS = 20_000
#: Fewest records (messages) of the log per reading process: below, fewer processes.
MIN_RECORDS_PER_PROCESS = 1_000

def matrix_fields(ev: TopicEvent) -> EventRow:
    """The fields the matrix reads (a tuple: a dict per event cost a 1M-event retrain
    about a second), the event id within its dedupe namespace as the worker's seen set
    keeps it (``TopicEvent.dedupe_namespace``): one shopper's id cannot drop another's
    event from training any more than from the live counts."""
    return _row(ev.event_id, ev.type, ev.user_id, ev.anonymous_id, ev.item_id, ev.quantity,
                ev.ts)


def _row(event_id: str, kind: str, user: str | None, anon: str | None, item: str | None,
         quantity: int | None, ts: float) -> EventRow:
    """The row of one event's fields (the one place of the row's shape)."""
    return (f"{dedupe_namespace(user, anon)}\x00{event_id}", kind, user, anon, item,
            quantity, ts)


def plain_rows(events: list[PlainEvent], forgotten: Mapping[str, float]
                ) -> Iterator[EventRow]:
    """:func:`matrix_fields` and :func:`stream.forget.dropped` for events read by
    :func:`schemas.topic_plain.plain_events` (which always carry ``received_at``)."""
    for event_id, kind, user, anon, item, quantity, ts, received in events:
        if not dropped_fields(kind, user, anon, received, forgotten):
            yield _row(event_id, kind, user, anon, item, quantity, ts)


def iter_topic_events(settings: Settings, *, ends: dict[int, int] | None = None,
                      processes: int = 1,
                      progress: Callable[[int, int], None] | None = None
                      ) -> Iterator[EventRow]:
    """Every valid event on the events topic as the fields the matrix reads
    (:data:`recommender.interactions.EventRow`; bad messages skipped), but none of a
    forgotten id received before it was forgotten (``stream.forget``: the ``forgotten``
    topic is read first), in partition order then offset order.

    ``ends`` receives the end offset read up to per partition. ``processes``: most
    processes reading at once (each at least :data:`MIN_RECORDS_PER_PROCESS` records).
    ``progress(read, total)``: messages read so far of the log's end offsets summed,
    reported at the start and then every :data:`CHUNK_ROWS` rows or messages at most.
    """
    forgotten = read_forgotten(settings)
    targets = high_watermarks(settings, settings.topic_events)
    if ends is not None:
        ends.update(targets)
    parts = sorted(p for p, end in targets.items() if end > 0)
    records = sum(targets[p] for p in parts)
    counted = _counter(records, progress)
    counted(0)
    procs = max(1, min(processes, len(parts), records // MIN_RECORDS_PER_PROCESS))
    if procs == 1:
        for _, rows, read in _partition_chunks(settings, {p: targets[p] for p in parts},
                                               forgotten):
            counted(read)
            yield from rows
        return
    yield from _read_forked(settings, targets, parts, procs, forgotten, counted)


def _counter(total: int, progress: Callable[[int, int], None] | None
             ) -> Callable[[int], None]:
    """A function taking messages just read, reporting the sum so far to ``progress``."""
    done = 0

    def counted(read: int) -> None:
        nonlocal done
        done += read
        if progress is not None:
            progress(done, total)

    return counted


def _partition_chunks(settings: Settings, ends: Mapping[int, int],
                      forgotten: Mapping[str, float]
                      ) -> Iterator[tuple[int, list[EventRow], int]]:
    """``(partition, rows, messages)``: at most :data:`CHUNK_ROWS` rows, from the
    ``messages`` (at most as many) records read since the last chunk, partition by
    partition (a partition's last chunk may be empty)."""
    rows: list[EventRow] = []
    current: int | None = None
    read = 0
    for record in read_partitions(settings, settings.topic_events, dict(ends)):
        partition: int = record.partition
        if partition != current:
            if current is not None:
                yield current, rows, read
                rows, read = [], 0
            current = partition
        read += 1
        plain = plain_events(record.value)
        if plain is not None:
            rows.extend(plain_rows(plain, forgotten))
        else:
            try:
                events = decode_events(record.value, partition=record.partition,
                                       offset=record.offset,
                                       timestamp=record.timestamp / 1000)
            except PoisonMessage:
                continue
            for ev in events:
                if (forgotten or ev.type == "forget") and dropped(ev, forgotten):
                    continue
                rows.append(matrix_fields(ev))
        if len(rows) >= CHUNK_ROWS or read >= CHUNK_ROWS:
            yield partition, rows, read
            rows, read = [], 0
    if current is not None:
        yield current, rows, read


def _reader(settings: Settings, ends: dict[int, int], forgotten: Mapping[str, float],
            conn: Connection) -> None:
    """A reading process: ``(partition, rows, messages)`` to ``conn`` (the rows of that
    many records), ``(partition, None, 0)`` once a partition is read, ``(-1, reason, 0)``
    if reading failed."""
    # The retrain process's own SIGTERM handler (stream.trainer) must not run here: a
    # reader told to stop just stops.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        finished: set[int] = set()
        current: int | None = None
        for partition, rows, read in _partition_chunks(settings, ends, forgotten):
            if current is not None and partition != current:
                conn.send((current, None, 0))
                finished.add(current)
            current = partition
            if rows or read:
                conn.send((partition, rows, read))
        # The last partition, and any without a record left (retention) that yielded none.
        for partition in sorted(set(ends) - finished):
            conn.send((partition, None, 0))
    except Exception as exc:  # noqa: BLE001 - reported to the retrain, which raises
        conn.send((-1, f"{type(exc).__name__}: {exc}", 0))
    finally:
        conn.close()


def _read_forked(settings: Settings, targets: Mapping[int, int], parts: list[int],
                 procs: int, forgotten: Mapping[str, float],
                 counted: Callable[[int], None]) -> Iterator[EventRow]:
    """The rows of ``parts`` read by ``procs`` forked processes (process ``k`` reads
    every ``procs``-th partition from the ``k``-th), yielded in partition order;
    ``counted`` gets the messages read as their rows arrive."""
    ctx = multiprocessing.get_context("fork")  # the children inherit ``forgotten``
    conns: list[Connection] = []
    children: list[Any] = []
    for k in range(procs):
        mine = {p: targets[p] for p in parts[k::procs]}
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_reader, args=(settings, mine, forgotten, send),
                            name=f"streamrec-retrain-read-{k}", daemon=True)
        child.start()
        send.close()
        conns.append(recv)
        children.append(child)
    waiting: dict[int, deque[list[EventRow] | None]] = {p: deque() for p in parts}
    try:
        for partition in parts:
            queue = waiting[partition]
            while True:
                while not queue:
                    _receive(conns, waiting, counted)
                rows = queue.popleft()
                if rows is None:
                    break
                # Take what has arrived meanwhile first: a process whose rows wait in
                # its pipe is stopped until they are read.
                _receive(conns, waiting, counted, timeout=0)
                yield from rows
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
        for conn in conns:
            conn.close()


def _receive(conns: list[Connection], waiting: dict[int, deque[list[EventRow] | None]],
             counted: Callable[[int], None], timeout: float | None = None) -> None:
    """Take whatever the reading processes have sent, waiting up to ``timeout`` seconds
    (None: until one sent something); a process that has sent everything is dropped from
    ``conns``."""
    if not conns:
        if timeout is not None:
            return
        raise RuntimeError("the processes reading the events log ended before sending it all")
    for conn in wait(conns, timeout):
        assert isinstance(conn, Connection)  # wait() gives back what it was given
        try:
            partition, rows, read = conn.recv()
        except EOFError:
            conns.remove(conn)
            conn.close()
            continue
        if isinstance(rows, str):
            raise RuntimeError(f"reading the events log failed: {rows}")
        waiting[partition].append(rows)
        if read:
            counted(read)
