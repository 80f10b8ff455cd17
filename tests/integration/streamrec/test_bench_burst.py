"""``streamrec bench ingest --burst`` on a real broker: its end of the burst is the
group's lag 0 on the events topic the settings name, as ``streamrec status --json``
computes it; at its smallest sizes on a stack of its own it reports every phase and
leaves that stack whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.settings import Settings
from streamrec.bench.burst import lag_zero
from streamrec.ops.group_offsets import commit_group_offsets
from tests.integration.streamrec.test_stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_lag_zero_reads_the_events_topic_the_settings_name(settings: Settings) -> None:
    # STREAMREC_TOPIC_EVENTS other than "events" (as here): the check looked the topic
    # up under "events", and the bench died with KeyError 'events' once it had posted
    # the burst.
    assert settings.topic_events != "events"
    kafka_tools.create_topics(settings)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for i in range(5):
        producer.send(settings.topic_events, key=f"u{i}".encode(),
                      value=orjson.dumps({"v": 1, "events": []}))
    producer.flush()
    producer.close()
    check = lag_zero(settings)
    try:
        assert not check()  # nothing committed: the whole log is lag
        commit_group_offsets(settings, settings.topic_events,
                             kafka_tools.high_watermarks(settings, settings.topic_events))
        assert check()
    finally:
        check.probe.close()


def test_burst_at_its_smallest_reports_every_phase_and_leaves_the_worker_running(
        stack: Stack, tmp_path: Path) -> None:
    # The smallest sizes the flags allow, on a fresh stack: the timed retrain (and the
    # model the held phase waits for) ended in a NotEnoughData traceback below the
    # worker's STREAMREC_RETRAIN_MIN_EVENTS, and the ceiling phase left the stack it
    # measured with its worker stopped. Its one shopper knows every item, so the lone
    # event changes no list: a timeout, after 1 s here instead of the default 10.
    stack.up()
    out = tmp_path / "burst.json"
    res = stack.cli("bench", "ingest", "--burst", "--events", "1", "--shoppers", "1",
                    "--items", "1", "--threads", "1", "--batch", "1", "--concurrency", "1",
                    "--rate", "1", "--hold", "0.5", "--lone-samples", "1", "--lone-idle",
                    "0", "--lone-timeout", "1", "--train-events", "1", "--train-shoppers", "1",
                    "--out", str(out),
                    timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = orjson.loads(out.read_text())
    assert {"burst", "freshness", "lone", "ceiling", "retrain"} <= set(report)
    assert report["burst"]["events"] == 1 and "cpu_us_per_event" in report["burst"]
    assert report["ceiling"]["events"] == 1
    # 1 event/s held for 0.5 s: one event still, so the phase reports a freshness
    assert report["freshness"]["events"] == 1 and report["freshness"]["p99_ms"] is not None
    assert report["freshness"]["outside"]["errors"] == 0  # probes through the API, if any
    assert report["lone"]["samples"] == 1
    assert report["retrain"]["n_events"] == 1 and report["retrain"]["version"]
    status = stack.status()  # ok only when every recorded process runs
    assert [w for w in status["workers"] if w["ready"]], status["workers"]
