"""The pipeline status that `streamrec status --json` and the dashboard share
(core/pipeline_status.py), against a real worker, Tansu and redis-server: one reused probe
sees the pipeline move, dead letters keep their reasons, the worker is found through the
registry, trainings are remembered, and unreachable servers are reported, not raised."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.net import free_port
from core.pipeline_status import PipelineProbe
from core.settings import Settings
from stream.retrain import train_and_publish
from tests.polling import wait_for

pytestmark = pytest.mark.integration


def _event(i: int) -> bytes:
    return orjson.dumps({"v": 1, "events": [{"event_id": f"e-{i}", "type": "view",
                                             "user_id": f"u{i % 3}", "item_id": f"i{i % 4}",
                                             "ts": time.time(), "received_at": time.time()}]})


def test_one_probe_follows_the_pipeline(settings: Settings,
                                        start_worker: Callable[..., Any]) -> None:
    worker = start_worker()
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for i in range(6):
        producer.send(settings.topic_events, key=f"u{i % 3}".encode(), value=_event(i))
    producer.send(settings.topic_events, key=b"bad", value=b"[1, 2]")
    producer.flush()
    with PipelineProbe(settings) as probe:
        def drained() -> dict[str, Any] | None:
            s = probe.collect()
            done = s["processed"] == 6 and s["dead_lettered"] == 1 and s["lag"] == 0
            return s if done and s["freshness"] and s["workers"] else None

        status = wait_for(drained, 60, "events processed", interval=0.3)
        assert status["errors"] == {}
        assert status["topics"][settings.topic_events]["total"] == 7
        dead = status["dead_letters"]
        assert len(dead) == 1 and dead[0]["topic"] == settings.topic_events
        assert "not a JSON object" in dead[0]["reason"]
        [beat] = status["workers"]
        assert beat["pid"] == worker.pid and beat["ready"] and not beat["stale"]
        # counts are numbers (`lists_waiting` was a string: `jq` found "0" != 0)
        assert beat["sweep_pending"] == 0 and beat["lists_waiting"] == 0
        # events/s: the live workers' heartbeat rates, summed (the dashboard shows it too)
        assert beat["events_per_s"] >= 0 and status["events_per_s"] == beat["events_per_s"]
        histogram = status["freshness"]["histogram"]
        assert 0 <= status["freshness"]["age_s"] < 60  # published with the heartbeat
        assert status["freshness"]["stale"] is False
        assert histogram[-1]["le_ms"] is None and sum(b["count"] for b in histogram) >= 1
        assert status["model_version"] is None and status["model_history"] == []
        assert isinstance(status["redis_memory_bytes"], int)
        assert status["redis_maxmemory_bytes"] == 0  # the test server sets no limit

        # The same probe (same clients) sees new messages: its end offsets are fresh.
        producer.send(settings.topic_events, key=b"u1", value=_event(100))
        producer.flush()
        wait_for(lambda: probe.collect()["topics"][settings.topic_events]["total"] == 8, 30,
                 "the new end offset")

        result = train_and_publish(settings.model_copy(update={"retrain_min_events": 1}),
                                   wait_live_s=30)
        status = probe.collect()
        assert status["model_version"] == result.version
        [trained] = status["model_history"]
        assert trained["version"] == result.version and trained["n_events"] >= 6
        assert status["model"]["n_users"] == trained["n_users"]
    producer.close()


def test_unreachable_servers_are_reported_not_raised(settings: Settings) -> None:
    nowhere = settings.model_copy(update={
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with PipelineProbe(nowhere) as probe:
        status = probe.collect(parallel=True)
    assert set(status["errors"]) == {"kafka", "redis"}
    # lag unknown, not 0: a 0 reads as a drained pipeline (status, dashboard, scripts)
    assert status["processed"] == 0 and status["lag"] is None and status["workers"] == []


def test_ages_are_never_negative_when_a_time_is_ahead_of_this_clock(
        settings: Settings) -> None:
    """A model trained on a host whose clock runs ahead (or this clock stepped back):
    `model_age_s` was negative (`streamrec status` printed "trained -3600s ago")."""
    with PipelineProbe(settings) as probe:
        client, keys = probe._redis_client(), probe.keys
        ahead = time.time() + 3600
        client.set(keys.model_current, "v-ahead")
        client.hset(keys.model_meta("v-ahead"), mapping={"trained_at": repr(ahead)})
        client.hset(keys.stats, mapping={"freshness_p50_ms": "1", "freshness_p99_ms": "2",
                                         "freshness_at": repr(ahead)})
        status = probe.redis_status()
    assert status["model_age_s"] == 0.0
    assert status["freshness"]["age_s"] == 0.0
