"""The one log format, and the kafka-python noise it drops."""

from __future__ import annotations

import io
import logging

import pytest
from kafka.errors import Cancelled, KafkaConnectionError

from core.logging_setup import RepeatLimiter, configure_logging


def test_a_refresh_cancelled_by_close_is_not_an_error_line() -> None:
    # Seen after `streamrec train` now and then: kafka-python's own close() cancels a
    # metadata refresh in flight and logs it at ERROR; nothing had failed.
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    try:
        cluster = logging.getLogger("kafka.cluster")
        cluster.error("Metadata refresh: failed %s", Cancelled())
        cluster.error("Metadata refresh: failed %s", KafkaConnectionError("refused"))
        configure_logging("INFO", stream=out)  # twice: still one filter
        assert len(cluster.filters) == 1
    finally:
        configure_logging("INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "KafkaConnectionError" in lines[0] and "level=ERROR" in lines[0]


def test_repeated_warnings_pass_once_per_interval_with_a_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("core.logging_setup.time.monotonic", lambda: now[0])
    limiter = RepeatLimiter(interval_s=10.0, max_templates=2)

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, "", 0, msg, None, None)

    assert limiter.filter(record("Invalid HTTP request received."))
    assert not any(limiter.filter(record("Invalid HTTP request received.")) for _ in range(5))
    assert limiter.filter(record("Unsupported upgrade request."))  # another template
    assert limiter.filter(record("Invalid HTTP request received.", logging.INFO))  # below
    now[0] += 10.0
    passed = record("Invalid HTTP request received.")
    assert limiter.filter(passed) and getattr(passed, "suppressed", None) == 5
    assert len(limiter._last) <= 2
    assert limiter.filter(record("third template"))  # the bounded table starts over
    assert len(limiter._last) <= 2
