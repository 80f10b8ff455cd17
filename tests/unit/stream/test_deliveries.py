"""The sensor of ``stream.deliveries`` keeps each record whose send failed, whole and in
order, for the batch's last step to send again (Faust only logs a refused send)."""

from __future__ import annotations

from types import SimpleNamespace

from stream import metrics
from stream.deliveries import SendWatch


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
