"""What the worker's log says while Redis is away: once that it is, once that it is back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stream.rebuild import RedisOutageNotice, retry_redis


def test_an_outage_is_named_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    # On a live stack with redis-server stopped (SIGSTOP) the worker's log held only
    # Faust's "Timer heartbeat is overlapping" lines: nothing named Redis, nothing said
    # what the worker did meanwhile, nothing said when it was over.
    notice = RedisOutageNotice("redis://:hunter2-pw@10.0.0.7:6379/0")
    caplog.set_level(logging.INFO, logger="streamrec.rebuild")
    for _ in range(30):  # a beat every 2 s for a minute
        notice.failed(TimeoutError())
    notice.answered()
    notice.answered()  # the next beats: nothing more
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2, lines
    (level, down), (level_back, back) = lines
    assert level == "WARNING" and "redis://***@10.0.0.7:6379/0 does not answer" in down
    assert "TimeoutError" in down and "retries" in down and "nothing is lost" in down
    assert level_back == "INFO" and "answers again after" in back
    assert "hunter2-pw" not in down + back


def test_a_batch_that_waited_for_redis_says_when_it_went_through(
        caplog: pytest.LogCaptureFixture) -> None:
    attempts = []

    async def call() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("refused")
        return 7

    caplog.set_level(logging.INFO, logger="streamrec.rebuild")
    assert asyncio.run(retry_redis(call, what="a batch of 12 events")) == 7
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "retrying until it answers" in lines[0][1]
    assert "Redis answers again: applied a batch of 12 events after 2 failed" in lines[1][1]


def test_a_call_that_never_failed_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def call() -> str:
        return "ok"

    caplog.set_level(logging.DEBUG, logger="streamrec.rebuild")
    assert asyncio.run(retry_redis(call, what="x")) == "ok"
    notice = RedisOutageNotice("redis://127.0.0.1:6379/0")
    notice.answered()
    assert not caplog.records
