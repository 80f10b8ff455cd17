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


def test_a_flood_of_per_request_or_per_message_warnings_writes_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Measured on a live stack: 1,000 poison messages wrote 1,000 `dead-lettered` lines to
    # worker.log, and every tracking request during a Redis outage one `tracking rate
    # limits cannot be counted` line to api.log: a disk filled at the rate of the flood.
    now = [1e9]
    monkeypatch.setattr("core.logging_setup.time.monotonic", lambda: now[0])
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    try:
        worker, api = logging.getLogger("streamrec.worker"), logging.getLogger("streamrec.api")
        for offset in range(1000):
            worker.warning("dead-lettered %s[%d]@%d: %s", "events", 0, offset, "not JSON")
            api.warning("tracking rate limits cannot be counted (%r): refusing writes",
                        TimeoutError())
        worker.info("worker %s ready (partitions assigned)", "w1")  # INFO is never held
        now[0] += 10.0
        worker.warning("dead-lettered %s[%d]@%d: %s", "events", 0, 1000, "not JSON")
        configure_logging("INFO", stream=out)  # twice: still one filter each
        assert len(worker.filters) == 1 and len(api.filters) == 1
    finally:
        configure_logging("INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert "events[0]@0" in lines[0] and "refusing writes" in lines[1] and "ready" in lines[2]
    assert "events[0]@1000" in lines[3] and "suppressed=999" in lines[3]


def test_uvicorn_colour_codes_stay_out_of_the_log() -> None:
    # uvicorn passes its message again with terminal colours as `color_message`; api.log
    # carried it on every start and stop line, escape codes included.
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    uvicorn_error, uvicorn_root = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn")
    saved = [(lg, lg.level, lg.disabled, lg.propagate) for lg in (uvicorn_error, uvicorn_root)]
    # another test's uvicorn Config (its own logging config) may have changed these
    for lg in (uvicorn_error, uvicorn_root):
        lg.setLevel(logging.INFO)
        lg.disabled, lg.propagate = False, True
    try:
        uvicorn_error.info(
            "Started server process [%d]", 42,
            extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    finally:
        for lg, level, disabled, propagate in saved:
            lg.setLevel(level)
            lg.disabled, lg.propagate = disabled, propagate
        configure_logging("INFO")
    line = out.getvalue()
    assert 'msg="Started server process [42]"' in line
    assert "\x1b" not in line and "color_message" not in line


def test_a_not_limited_warning_always_passes() -> None:
    """"AUTH IS OFF" is logged once per app start; several apps in one process (as in the
    tests) saw it held back as a repeat."""
    from core.logging_setup import NOT_LIMITED, RepeatLimiter

    limiter = RepeatLimiter(interval_s=60)

    def record(**extra: object) -> logging.LogRecord:
        rec = logging.LogRecord("streamrec.api", logging.WARNING, "", 0, "AUTH IS OFF", None,
                                None)
        rec.__dict__.update(extra)
        return rec

    assert [limiter.filter(record(**NOT_LIMITED)) for _ in range(3)] == [True] * 3
    assert [limiter.filter(record()) for _ in range(2)] == [True, False]


def test_a_kafka_client_flood_during_an_outage_writes_a_line_per_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Measured with Apache Kafka stopped for 40 s under traffic: api.log grew by 138,000
    # aiokafka lines (two templates, ~3,400 a second), worker.log by ~70 a second.
    now = [2e9]
    monkeypatch.setattr("core.logging_setup.time.monotonic", lambda: now[0])
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    try:
        for _ in range(1000):
            logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1,
                                                ConnectionRefusedError(111, "refused"))
            logging.getLogger("aiokafka.consumer.fetcher").error(
                "Failed fetch messages from %s: %s", 1, "NodeNotReadyError")
        now[0] += 10.0
        logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "x")
        logging.getLogger("aiokafkaish").error("not a Kafka client's logger")
        logging.getLogger("aiokafka").error("not a Kafka client's logger")
        logging.getLogger("streamrec.worker").info("INFO of others untouched")
    finally:
        configure_logging("INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 6, lines
    assert "Unable connect" in lines[0] and "Failed fetch" in lines[1]
    assert "suppressed=999" in lines[2]
    assert "aiokafkaish" in lines[3] and "logger=aiokafka " in lines[4]
