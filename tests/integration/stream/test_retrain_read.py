"""The retrain's read of the events log against a real broker: several reading
processes give exactly the rows one does, in the same order, and skip the same bad
messages and forgotten ids."""

from __future__ import annotations

import multiprocessing
import time

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.settings import Settings
from schemas import EventEnvelope, TopicEvent
from schemas.merch import ForgetRecord
from stream import retrain_read
from stream.retrain_read import iter_topic_events

pytestmark = [pytest.mark.integration, pytest.mark.broker]

NOW = time.time()


def produce_shop(settings: Settings, shoppers: int = 40) -> None:
    """Envelopes of a few events per shopper over 4 partitions, a poison message, a
    bare event and a forgotten shopper."""
    kafka_tools.create_topics(settings)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for s in range(shoppers):
        events = [TopicEvent(event_id=f"e{s}-{k}", type=kind, user_id=f"u{s}",
                             item_id=f"i{(s * 7 + k) % 23}", ts=NOW - 100 + k,
                             received_at=NOW - 100 + k)
                  for k, kind in enumerate(("view", "view", "add_to_cart", "purchase"))]
        producer.send(settings.topic_events, key=f"u{s}".encode(), value=orjson.dumps(
            EventEnvelope(events=events).model_dump(exclude_none=True)))
    producer.send(settings.topic_events, key=b"u1", value=b"{not json")
    producer.send(settings.topic_events, key=b"u2", value=orjson.dumps(
        {"type": "view", "user_id": "u2", "item_id": "bare"}))
    producer.send(settings.topic_forgotten, key=b"u3", value=ForgetRecord(
        entity="u3", at=NOW).model_dump_json().encode())
    producer.flush()
    producer.close()


def test_several_reading_processes_give_the_rows_of_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"topic_partitions": 4})
    produce_shop(settings)
    monkeypatch.setattr(retrain_read, "MIN_RECORDS_PER_PROCESS", 1)
    monkeypatch.setattr(retrain_read, "CHUNK_ROWS", 7)  # several chunks per partition
    ends_one: dict[int, int] = {}
    reports: dict[int, list[tuple[int, int]]] = {1: [], 3: []}
    one = list(iter_topic_events(settings, ends=ends_one, processes=1,
                                 progress=lambda *done: reports[1].append(done)))
    ends_three: dict[int, int] = {}
    three = list(iter_topic_events(settings, ends=ends_three, processes=3,
                                   progress=lambda *done: reports[3].append(done)))
    assert three == one
    # `streamrec train`'s bar: messages read of the log's, from 0 to all, as they come
    for seen in reports.values():
        assert seen[0] == (0, 42) and seen[-1] == (42, 42) and len(seen) > 4, seen
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert ends_three == ends_one and sum(ends_one.values()) == 42
    assert len(one) == 39 * 4 + 1  # u3 forgotten, the poison message skipped
    assert not any(row[2] == "u3" for row in one)
    assert any(row[4] == "bare" for row in one)
    # Partition by partition, each in offset order.
    partitions = [kafka_tools.partition_of(row[2].encode(), 4) for row in one]
    assert partitions == sorted(partitions)


def test_a_failing_reader_fails_the_read(settings: Settings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"topic_partitions": 4})
    produce_shop(settings, shoppers=8)
    monkeypatch.setattr(retrain_read, "MIN_RECORDS_PER_PROCESS", 1)

    def broken(*args: object, **kwargs: object) -> list[TopicEvent]:
        raise OSError("disk on fire")

    monkeypatch.setattr(retrain_read, "decode_events", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(iter_topic_events(settings, processes=2))


def test_a_read_given_up_stops_its_readers(settings: Settings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"topic_partitions": 4})
    produce_shop(settings)
    monkeypatch.setattr(retrain_read, "MIN_RECORDS_PER_PROCESS", 1)
    monkeypatch.setattr(retrain_read, "CHUNK_ROWS", 2)
    rows = iter_topic_events(settings, processes=2)
    assert next(rows)
    rows.close()  # a retrain stopped mid-read
    assert not [p for p in multiprocessing.active_children()
                if p.name.startswith("streamrec-retrain-read")]
