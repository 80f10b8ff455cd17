"""The sensor of ``stream.deliveries`` keeps each record whose send failed, whole and in
order, for the batch's last step to send again (Faust only logs a refused send)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from faust.exceptions import ProducerSendError

from stream import metrics
from stream.deliveries import SendWatch, send_changelog


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
