"""stream.faust_compat.send_errors: a send Kafka refused reaches the sensors (the worker's
SendWatch holds it to send again) and leaves no "Future exception was never retrieved"
behind; a faithful Faust ``Topic`` and ``FutureMessage``, no broker."""

from __future__ import annotations

import asyncio
import gc
import inspect
from typing import Any

import faust
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.topics import Topic
from faust.types.tuples import FutureMessage, PendingMessage

from stream.faust_compat import send_errors

ORIGINAL = inspect.unwrap(Topic._on_published)


class _Sensor(faust.Sensor):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        # Its name only, as SendWatch keeps it: the exception's traceback holds the future
        self.errors.append(type(exc).__name__)


def _publish_refused(on_published: Any) -> tuple[list[dict[str, Any]], _Sensor]:
    """One record's send refused by Kafka, through ``on_published``; the loop's exception
    reports once the record's futures are gone, and the sensor."""
    app = faust.App("send-errors-test", broker="kafka://127.0.0.1:1", store="memory://")
    topic = app.topic("events")
    sensor = _Sensor()
    app.sensors.add(sensor)
    reports: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reports.append(ctx))
        message = FutureMessage(PendingMessage(topic, b"k", b"v", None, None, None, None,
                                               None, None))
        sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent.set_exception(MessageSizeTooLargeError())
        on_published(topic, sent, message=message, producer=None, state={sensor: None})
        del message, sent
        gc.collect()

    asyncio.run(scenario())
    return reports, sensor


def test_faust_sets_the_refusal_on_a_future_nobody_awaits() -> None:
    # The internal this patch relies on; a release that changes it needs a fresh look.
    source = inspect.getsource(ORIGINAL)
    assert "message.set_exception(exc)" in source and "on_send_error" in source
    reports, sensor = _publish_refused(ORIGINAL)
    assert sensor.errors == ["MessageSizeTooLargeError"]
    assert any("never retrieved" in r["message"] for r in reports), reports  # the noise


def test_a_refused_send_reaches_the_sensors_and_leaves_no_unretrieved_future() -> None:
    reports, sensor = _publish_refused(send_errors._retrieving_failures(ORIGINAL))
    assert sensor.errors == ["MessageSizeTooLargeError"]
    assert reports == []


def test_an_awaiting_caller_still_gets_the_refusal() -> None:
    on_published = send_errors._retrieving_failures(ORIGINAL)
    app = faust.App("send-errors-test-2", broker="kafka://127.0.0.1:1", store="memory://")
    topic = app.topic("events")

    async def scenario() -> None:
        message = FutureMessage(PendingMessage(topic, b"k", b"v", None, None, None, None,
                                               None, None))
        sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent.set_exception(MessageSizeTooLargeError())
        on_published(topic, sent, message=message, producer=None, state={})
        with pytest.raises(MessageSizeTooLargeError):
            await message

    asyncio.run(scenario())


def test_install_is_idempotent() -> None:
    send_errors.install()
    patched = Topic._on_published
    send_errors.install()
    assert Topic._on_published is patched
    assert inspect.unwrap(patched) is ORIGINAL
