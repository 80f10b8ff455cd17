"""``streamrec topics create`` on the session's broker: idempotent, and on Apache Kafka the
topics get their retention and compaction (the worker's changelog too) and a topic whose
config drifted is reported, never changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from core.settings import Settings, env_for_child
from core.topics import admin_client, changelog_topic
from tests.conftest import TEST_BROKER

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def _topics_create(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrec.cli", "topics", "create"],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120, check=False)


def _configs(settings: Settings, topic: str) -> dict[str, str]:
    admin = admin_client(settings)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")["topic"][topic]
    finally:
        admin.close()
    return {k: str(v["value"]) for k, v in found.items()}


def test_create_is_idempotent_and_reports_drift(settings: Settings,
                                                start_worker: Callable[..., Any]) -> None:
    fresh = settings.model_copy(update={"topic_dlq": settings.topic_dlq + "-new"})
    first = _topics_create(fresh)  # (the worker fixture made events and catalog)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{fresh.topic_dlq}: created" in first.stdout
    names = (settings.topic_events, settings.topic_catalog, settings.topic_dlq,
             settings.topic_forgotten)
    again = _topics_create(settings)
    assert again.returncode == 0 and all(f"{name}: exists" in again.stdout for name in names)
    assert "DRIFTED" not in again.stdout
    if TEST_BROKER != "kafka":
        assert "Tansu ignores topic configs" in again.stdout
        return

    events = _configs(settings, settings.topic_events)
    assert (events["retention.ms"], events["cleanup.policy"]) == ("-1", "delete")
    catalog = _configs(settings, settings.topic_catalog)
    assert (catalog["retention.ms"], catalog["cleanup.policy"]) == ("-1", "compact")
    forgotten = _configs(settings, settings.topic_forgotten)
    assert (forgotten["retention.ms"], forgotten["cleanup.policy"]) == ("-1", "compact")
    start_worker()  # the history changelog, made by topics create: compacted
    assert _configs(settings, changelog_topic(settings))["cleanup.policy"] == "compact"

    # A dead-letter topic someone made by hand with the broker's default retention.
    drifted = settings.model_copy(update={"topic_dlq": settings.topic_dlq + "-by-hand"})
    admin = admin_client(settings)
    admin.create_topics([NewTopic(drifted.topic_dlq, 1, 1)])
    admin.close()
    report = _topics_create(drifted)
    assert report.returncode == 0
    assert (f"{drifted.topic_dlq}: exists; DRIFTED: retention.ms is 604800000, wanted -1"
            in report.stdout), report.stdout
    assert "streamrec never changes an existing topic" in report.stderr
    assert _configs(settings, drifted.topic_dlq)["retention.ms"] == "604800000"
