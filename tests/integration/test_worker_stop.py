"""A worker stopped (SIGTERM) while its broker is away stops cleanly, on a real broker.

It used to hang: aiokafka's fetcher, sleeping out a failed fetch's retry backoff, ended
its close with ``CancelledError``, which killed Faust's consumer thread with a traceback
and left the worker waiting for it until something sent SIGKILL
(``stream/faust_compat/stop_in_outage.py``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from core import kafka_tools
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, stop_pid
from tests.conftest import start_test_broker
from tests.integration.conftest import WORKER_CMD, wait_worker_ready
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_sigterm_while_the_broker_is_away_stops_cleanly(settings: Settings,
                                                          tmp_path: Path) -> None:
    broker = start_test_broker(tmp_path / "broker")
    s = settings.model_copy(update={"kafka_bootstrap": broker.address})
    kafka_tools.create_topics(s)
    log = tmp_path / "worker.log"
    worker = spawn(WORKER_CMD, log_path=log, env=env_for_child(s))
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        broker.stop(timeout=60)
        # the worker noticed (stream.broker_watch), and its fetches are failing by now
        wait_for(lambda: f"Kafka at {broker.address} does not answer" in log.read_text(),
                 15, "the worker's outage warning")
        wait_for(lambda: "Failed fetch messages" in log.read_text(), 15, "a failed fetch")
        os.kill(worker.pid, signal.SIGTERM)
        wait_for(lambda: worker.poll() is not None, 20, "the worker stopped by SIGTERM")
        text = log.read_text()
        assert worker.returncode == 0, text
        assert "worker stopped cleanly" in text
        assert "Exception in thread" not in text and "Traceback" not in text, text
    finally:
        stop_pid(worker.pid)
        broker.stop(timeout=60)
