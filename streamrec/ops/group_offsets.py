"""Where the worker group reads the events log: offsets by time, and moving the group's
committed offsets (for ``streamrec replay`` and the ingest benchmark's bare Faust group).

Both use Apache Kafka's own mechanisms on Kafka and work around Tansu where it lacks
them (:mod:`core.broker` tells which answers).
"""

from __future__ import annotations

import time
from typing import Any

from core.settings import Settings


class ReplayError(RuntimeError):
    """A replay that cannot run as asked (one-line reason)."""


def reader(settings: Settings, **extra: Any) -> Any:
    """A kafka-python consumer that never commits by itself."""
    from kafka import KafkaConsumer

    from core.kafka_tools import client_options

    return KafkaConsumer(**client_options(settings), enable_auto_commit=False, **extra)


def _timestamp_at(consumer: Any, tp: Any, offset: int) -> int | None:
    """Record timestamp (ms) at ``offset``, or None when nothing is there."""
    consumer.seek(tp, offset)
    for _ in range(20):
        batch = consumer.poll(timeout_ms=250, max_records=1)
        for record in batch.get(tp, ()):
            return int(record.timestamp)
    return None


def offsets_for_time(settings: Settings, topic: str, ts: float) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is ``>= ts``.

    Apache Kafka answers it itself (ListOffsets by time). On Tansu, which always answers
    that with 0: binary search over record timestamps (O(log n) single-record fetches
    per partition). That assumes timestamps grow with offsets within a partition (create
    time from one producer clock); where they do not, the answer is a valid offset near
    the boundary.
    """
    from kafka import TopicPartition

    from core.broker import is_tansu
    from core.kafka_tools import high_watermarks, offsets_for_times

    if not is_tansu(settings):
        return offsets_for_times(settings, topic, ts)

    ends = high_watermarks(settings, topic)
    target = int(ts * 1000)
    consumer = reader(settings, max_partition_fetch_bytes=1 << 20)
    try:
        result: dict[int, int] = {}
        for partition, end in sorted(ends.items()):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            lo, hi = 0, end  # answer in [lo, hi]
            while lo < hi:
                mid = (lo + hi) // 2
                stamp = _timestamp_at(consumer, tp, mid)
                if stamp is None or stamp >= target:
                    hi = mid
                else:
                    lo = mid + 1
            result[partition] = lo
        return result
    finally:
        consumer.close()


def commit_group_offsets(settings: Settings, topic: str, offsets: dict[int, int],
                         timeout_s: float = 60.0) -> None:
    """Commit ``offsets`` for the worker group (its workers must be stopped).

    A manually assigned consumer commits with no generation, which the broker accepts
    only once the group has no members: on Apache Kafka at once after a clean stop, or
    after the session timeout of a killed worker (UnknownMemberId meanwhile, so the
    commit is retried). Tansu never lets such a commit through once a worker was a
    member (UnknownMemberId for good), and joining the group fails there
    (InconsistentGroupProtocol against Faust's assignor): on Tansu the group is deleted
    and committed anew, its other topics' offsets carried over (:func:`_recommit_tansu`).
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    from core.broker import is_tansu

    if is_tansu(settings):
        _recommit_tansu(settings, topic, offsets, timeout_s)
        return
    consumer = reader(settings, group_id=settings.app_id)
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in tps.items()})
                return
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise ReplayError(f"could not commit offsets for {settings.app_id}: {exc} "
                                      "(are workers still running?)") from exc
                time.sleep(1.0)
    finally:
        consumer.close(autocommit=False)


def _recommit_tansu(settings: Settings, topic: str, offsets: dict[int, int],
                    timeout_s: float) -> None:
    """Tansu: delete the worker group, then commit ``offsets`` for ``topic`` and the
    group's previous offsets for every other topic (the catalog keeps its position)."""
    from kafka import TopicPartition
    from kafka.errors import GroupIdNotFoundError, KafkaError
    from kafka.structs import OffsetAndMetadata

    from core.kafka_tools import committed_offsets
    from core.topics import admin_client

    group = settings.app_id
    wanted = {tp: off for tp, off in committed_offsets(settings, group).items()
              if tp.topic != topic}
    wanted.update({TopicPartition(topic, p): o for p, o in offsets.items()})
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout_s
    try:
        try:
            admin.delete_groups([group])
        except GroupIdNotFoundError:
            pass
        while True:
            try:
                errors = admin.alter_group_offsets(
                    group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in wanted.items()})
                failed = {tp: err for tp, err in errors.items()
                          if getattr(err, "errno", 0) != 0}  # NoError's is 0
            except KafkaError as exc:  # Tansu drops the connection after a group delete
                failed = {TopicPartition(topic, -1): exc}
            if not failed:
                return
            if time.monotonic() > deadline:
                raise ReplayError(f"could not commit offsets for {group}: {failed}")
            time.sleep(0.5)
    finally:
        admin.close()


def follow_group(settings: Settings, topic: str, starts: dict[int, int],
                 ends: dict[int, int], *, stall_s: float = 300.0, poll_s: float = 1.0) -> bool:
    """Show the worker group reprocessing ``topic`` from ``starts`` to ``ends`` (per
    partition) as a progress bar with ETA, from its committed offsets; True once every
    partition reached its end, False when nothing moved for ``stall_s`` seconds."""
    from core.kafka_tools import committed_offsets
    from streamrec.progress import progress_bar

    total = sum(max(0, ends[p] - starts.get(p, 0)) for p in ends)
    done, moved_at = 0, time.monotonic()
    with progress_bar(total=total, unit="msg", desc="reprocess") as bar:
        while done < total:
            time.sleep(poll_s)
            try:
                raw = committed_offsets(settings, settings.app_id)
            except Exception:  # noqa: BLE001 - a broker hiccup: read again next second
                raw = {}
            at = {tp.partition: offset for tp, offset in raw.items() if tp.topic == topic}
            now = sum(min(max(0, at.get(p, 0) - starts.get(p, 0)), ends[p] - starts.get(p, 0))
                      for p in ends if ends[p] > starts.get(p, 0))
            if now > done:
                bar.update(now - done)
                done, moved_at = now, time.monotonic()
            elif time.monotonic() - moved_at > stall_s:
                return False
    return True
