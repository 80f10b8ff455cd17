"""The worker's once-per-outage Kafka lines (the integration test: test_outage.py)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from core.net import free_port
from stream.broker_watch import BrokerOutageNotice, unreachable


def test_a_listening_server_answers_and_a_closed_port_does_not() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        closed = free_port()
        assert asyncio.run(unreachable(f"127.0.0.1:{closed},127.0.0.1:{port}")) is None
    assert asyncio.run(unreachable(f"127.0.0.1:{closed}")) == "ConnectionRefusedError"
    assert asyncio.run(unreachable("no-port-here")) == "no server named"


def test_an_outage_is_said_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    notice = BrokerOutageNotice("127.0.0.1:9092")
    with caplog.at_level(logging.INFO, logger="streamrec.worker"):
        notice.answered()  # no outage: nothing to say
        for _ in range(5):
            notice.failed("ConnectionRefusedError")
        notice.answered()
        notice.answered()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Kafka at 127.0.0.1:9092 does not answer (ConnectionRefusedError)")
    assert lines[1].startswith("Kafka at 127.0.0.1:9092 answers again after")
