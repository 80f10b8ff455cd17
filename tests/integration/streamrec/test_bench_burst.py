"""``streamrec bench ingest --burst`` on a real broker: its end of the burst is the
group's lag 0 on the events topic the settings name, as ``streamrec status --json``
computes it."""

from __future__ import annotations

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.settings import Settings
from streamrec.bench.burst import lag_zero
from streamrec.ops.group_offsets import commit_group_offsets

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
