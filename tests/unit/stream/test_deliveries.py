"""The sensor of ``stream.deliveries`` keeps each record whose send failed, whole and in
order, for the batch's last step to send again (Faust only logs a refused send)."""

from __future__ import annotations

import asyncio
from functools import partial
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError

from stream import deliveries, metrics
from stream.deliveries import Held, SendWatch, send_changelog, to_send_again


def _message(key: bytes, value: bytes, partition: int | None) -> SimpleNamespace:
    return SimpleNamespace(key=key, value=value, partition=partition, timestamp=None,
                           headers=None)


def test_a_failed_send_is_kept_whole_counted_and_taken_once() -> None:
    watch = SendWatch()
    before = metrics.PRODUCE_REFUSED.labels("t-events")._value.get()  # noqa: SLF001
    ok = watch.on_send_initiated(None, "t-events", _message(b"u1", b"fine", None), 2, 4)
    first = watch.on_send_initiated(None, "t-events", _message(b"u1", b"big", None), 2, 3)
    second = watch.on_send_initiated(None, "t-changelog", _message(b"h", b"v", 1), 1, 1)
    watch.on_send_completed(None, ok, None)
    watch.on_send_error(None, RuntimeError("MessageSizeTooLargeError"), first)
    watch.on_send_error(None, RuntimeError("timed out"), second)

    held = watch.take()
    assert [(h.topic, h.key, h.value, h.partition) for h in held] == [
        ("t-events", b"u1", b"big", None), ("t-changelog", b"h", b"v", 1)]
    assert "MessageSizeTooLargeError" in held[0].error
    assert watch.take() == []
    assert metrics.PRODUCE_REFUSED.labels("t-events")._value.get() == before + 1  # noqa: SLF001


class _Buffer:
    """Faust's producer buffer with records queued through a table write."""

    def __init__(self, queued: int, calls: list[str]) -> None:
        self.size, self.calls = queued, calls

    async def flush(self) -> None:
        self.calls.append("buffer")
        self.size = 0


def test_changelog_records_go_after_faust_s_queue_and_a_refused_one_is_held() -> None:
    """The batch's changelog records go to the producer together, after what Faust's
    buffer still queues (one key's records keep their order); one refused at once and
    one Kafka refuses later are both held for ``settle``, the acknowledged one is not."""
    calls: list[str] = []

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []

        async def send(topic: str, key: bytes, value: bytes, partition: int,
                       timestamp: Any, headers: Any) -> asyncio.Future[Any]:
            calls.append(key.decode())
            if key == b"full":
                raise ProducerSendError("buffer full")
            futures.append(loop.create_future())
            return futures[-1]

        app = SimpleNamespace(producer=SimpleNamespace(buffer=_Buffer(2, calls), send=send))
        watch = SendWatch()
        await send_changelog(app, watch, "t-changelog",  # type: ignore[arg-type]
                             [(b"u1", b"1", 0), (b"full", b"2", 1), (b"u3", b"3", 2)])
        futures[0].set_result(None)
        futures[1].set_exception(KafkaTimeoutError("timed out"))
        await asyncio.sleep(0)  # the done callbacks
        return watch.take()

    held = asyncio.run(scenario())
    assert calls == ["buffer", "u1", "full", "u3"]
    assert [(h.topic, h.key, h.value, h.partition) for h in held] == [
        ("t-changelog", b"full", b"2", 1), ("t-changelog", b"u3", b"3", 2)]
    assert "KafkaTimeoutError" in held[1].error


def _held(key: bytes, value: bytes | None, topic: str = "t-changelog") -> Held:
    return Held(topic, key, value, 1, None, None, "KafkaTimeoutError")


def test_a_held_changelog_record_is_sent_again_as_its_key_s_value_now() -> None:
    """Each key's record sent again is its table value now, once: a tombstone refused
    while the key's next value went through would otherwise land after that value (a
    restore deleted a live history), and an old value after a newer one or a tombstone
    (a restore brought back a stale or a forgotten history)."""
    table = {b'"back"': b"v2", b'"twice"': b"v3"}  # "forgot" and "expired": deleted
    current = {"t-changelog": table.get}
    held = [_held(b'"back"', None),  # a forget's tombstone, then a new value went through
            _held(b"u1", b"fwd1", "t-events"), _held(b"u1", b"fwd2", "t-events"),
            _held(b'"twice"', b"v1"), _held(b'"twice"', b"v2"),  # v3 went through
            _held(b'"forgot"', b"v1"),  # its tombstone went through after it
            _held(b'"expired"', b"v1"), _held(b'"expired"', None)]  # both refused
    again = to_send_again(held, current)
    assert [(h.topic, h.key, h.value) for h in again] == [
        ("t-changelog", b'"back"', b"v2"), ("t-events", b"u1", b"fwd1"),
        ("t-events", b"u1", b"fwd2"), ("t-changelog", b'"twice"', b"v3"),
        ("t-changelog", b'"expired"', None)]
    assert to_send_again(held[1:3], {}) == held[1:3]  # no table: as held


def test_settle_sends_a_held_tombstone_as_its_key_s_value_now(monkeypatch: Any) -> None:
    """The value is read when the record is sent again: a write of the key since (here
    during the flush) is what goes, not the tombstone before it."""
    monkeypatch.setattr(deliveries, "RETRY_MIN_S", 0.0)
    table: dict[bytes, bytes] = {}
    sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def flush() -> None:
        table[b'"u1"'] = b"newer"  # written while the tombstone waited

    async def send_and_wait(topic: str, key: bytes, value: bytes | None, **kw: Any) -> None:
        sent.append((topic, key, value))

    producer = SimpleNamespace(flush=flush, buffer=SimpleNamespace(size=0),
                               send_and_wait=send_and_wait)
    watch = SendWatch()
    watch.current["t-changelog"] = table.get
    watch.held.append(_held(b'"u1"', None))
    asyncio.run(deliveries.settle(SimpleNamespace(producer=producer),  # type: ignore[arg-type]
                                  watch, what="a test batch"))
    assert sent == [("t-changelog", b'"u1"', b"newer")]
    assert watch.held == []


def test_a_held_changelog_record_of_a_partition_moved_away_is_not_sent_again() -> None:
    """The in-memory table keeps a revoked partition's histories: its copy sent after the
    new owner's records of the key would be the one a restore reads (the batch is
    unacknowledged here, so the new owner writes the key itself)."""
    table = {b'"moved"': b"stale", b'"kept"': b"v2"}
    moved = Held("t-changelog", b'"moved"', None, 0, None, None, "KafkaTimeoutError")
    held = [moved, _held(b'"kept"', b"v1"), _held(b"u1", b"fwd", "t-events")]
    assignor = SimpleNamespace(is_active=lambda tp: tp.partition == 1)
    owner = partial(deliveries.owner_of, SimpleNamespace(assignor=assignor, rebalancing=False))
    again = to_send_again(held, {"t-changelog": table.get}, owner)  # type: ignore[arg-type]
    assert [(h.topic, h.key, h.value) for h in again] == [
        ("t-changelog", b'"kept"', b"v2"), ("t-events", b"u1", b"fwd")]
