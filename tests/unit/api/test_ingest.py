"""Payload → topic messages, without Kafka: validation, ids, grouping by partition."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import orjson
import pytest

from api.errors import ValidationFailed
from api.ingest import (
    catalog_message,
    catalog_record,
    envelope_messages,
    identify_event,
    parse_events,
    to_topic_events,
)
from core.kafka_tools import partition_of
from schemas import EventEnvelope, IdentifyRequest, ItemUpdate

VIEW = {"type": "view", "user_id": "u1", "item_id": "a"}


def test_single_event_and_batch() -> None:
    assert len(parse_events(VIEW, max_events=5)) == 1
    assert len(parse_events({"events": [VIEW, VIEW]}, max_events=5)) == 2


@pytest.mark.parametrize("payload, loc, kind", [
    ({"events": []}, ["events"], "too_short"),
    ({"events": [VIEW] * 6}, ["events"], "too_long"),
    ({"events": "x"}, ["events"], "list_type"),
    ([VIEW], ["body"], "model_type"),
    (None, ["body"], "model_type"),
])
def test_batch_level_errors(payload: object, loc: list[str], kind: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_events(payload, max_events=5)
    (entry,) = info.value.detail or []
    assert entry["loc"] == loc and entry["type"] == kind


def test_per_event_errors_name_index_and_field() -> None:
    batch = {"events": [VIEW, {"type": "view", "user_id": "u1"}, 7,
                        {**VIEW, "quantity": "many", "timestamp": "2999-12-31T00:00:00Z"}]}
    with pytest.raises(ValidationFailed) as info:
        parse_events(batch, max_events=10)
    detail = info.value.detail or []
    assert {e["index"] for e in detail} == {1, 2, 3}
    assert all(set(e) == {"index", "loc", "msg", "type"} for e in detail)
    locs = {tuple(e["loc"]) for e in detail if e["index"] == 3}
    assert locs == {("quantity",), ("timestamp",)}
    assert "3 of 4" in info.value.message


def test_ids_and_times() -> None:
    events = parse_events({"events": [VIEW, {**VIEW, "event_id": "mine",
                                                 "timestamp": "2025-01-01T00:00:00"}]},
                          max_events=5)
    counter = itertools.count()
    topic = to_topic_events(events, received_at=1.8e9,
                            new_id=lambda i: f"gen-{i}-{next(counter)}")
    assert [e.event_id for e in topic] == ["gen-0-0", "mine"]
    assert topic[0].ts == 1.8e9 and topic[0].received_at == 1.8e9
    assert topic[1].ts == datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def test_one_envelope_per_partition_keeps_each_entity_on_its_partition() -> None:
    raw = [{"type": "view", "user_id": f"u{i % 37}", "item_id": f"i{i}"} for i in range(300)]
    raw += [{"type": "view", "anonymous_id": "anon", "item_id": "b"},
            {"type": "view", "user_id": "u2", "anonymous_id": "anon", "item_id": "c"}]
    topic = to_topic_events(parse_events({"events": raw}, max_events=500), received_at=1.8e9)
    messages = envelope_messages(topic, partitions=4)
    parts = [p for _, _, p in messages]
    assert parts == sorted(set(parts)) and len(parts) <= 4  # one message per partition
    seen: list[tuple[str, str]] = []
    for key, value, part in messages:
        events = EventEnvelope.model_validate(orjson.loads(value)).events
        assert key == events[0].entity.encode()
        for event in events:  # every event on its own entity's (stable) partition
            assert partition_of(event.entity.encode(), 4) == part
            seen.append((event.entity, event.item_id or ""))
        assert b"null" not in value  # absent fields are left out
    # Per entity, request order is kept.
    for entity in {e for e, _ in seen}:
        assert [i for e, i in seen if e == entity] == [
            t.item_id for t in topic if t.entity == entity]


def test_large_envelopes_are_split_in_order() -> None:
    raw = [{**VIEW, "item_id": f"item-{i:04d}-" + "x" * 200} for i in range(200)]
    topic = to_topic_events(parse_events({"events": raw}, max_events=500), received_at=1.8e9)
    messages = envelope_messages(topic, partitions=4, max_bytes=10_000)
    part = partition_of(b"u1", 4)
    assert len(messages) > 4 and all(k == b"u1" and p == part for k, _, p in messages)
    assert all(len(v) <= 10_000 for _, v, _ in messages)
    items = [e["item_id"] for _, v, _ in messages for e in orjson.loads(v)["events"]]
    assert items == [r["item_id"] for r in raw]


def test_identify_event() -> None:
    event = identify_event(IdentifyRequest(anonymous_id="anon", user_id="u"), received_at=1.8e9)
    assert event.type == "identify" and event.entity == "anon" and event.ts == 1.8e9
    ((key, _, part),) = envelope_messages([event], partitions=4)
    assert key == b"anon" and part == partition_of(b"anon", 4)
    old = IdentifyRequest(anonymous_id="a", user_id="u", timestamp=datetime(1990, 1, 1))
    assert identify_event(old, received_at=1.8e9).ts == datetime(1990, 1, 1,
                                                                 tzinfo=UTC).timestamp()


def test_timestamps_any_age_back_but_only_minutes_ahead() -> None:
    """Backfills of 1997 logs are accepted; a clock more than the setting ahead is a 422
    naming the field and the bound (the browser SDK retries it without the timestamp)."""
    old = {**VIEW, "timestamp": "1997-09-20T03:00:00Z"}
    assert parse_events(old, max_events=5)[0].timestamp.year == 1997
    ahead = {**VIEW, "timestamp": "2030-01-01T00:00:00Z"}
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert parse_events(ahead, max_events=5, context={"max_future_s": 0, "now": now})
    with pytest.raises(ValidationFailed) as info:
        parse_events({"events": [VIEW, ahead]}, max_events=5,
                     context={"max_future_s": 300, "now": now - 301})
    (entry,) = info.value.detail or []
    assert entry["index"] == 1 and entry["loc"] == ["timestamp"]
    assert "301 s ahead" in entry["msg"] and "at most 300 s" in entry["msg"]


def test_ids_are_character_bounded_and_free_of_control_characters() -> None:
    # API.md: at most 256 characters, in any script (512 and 1,024 bytes of UTF-8 here).
    for good in ("é" * 256, "😀" * 256, "x" * 256):
        assert parse_events({**VIEW, "item_id": good}, max_events=1)
    for bad in ("é" * 257, "x" * 257, "a\nb", "a\x00", "a\x85", "a\ud800"):
        with pytest.raises(ValidationFailed) as info:
            parse_events({**VIEW, "item_id": bad}, max_events=1)
        assert (info.value.detail or [])[0]["loc"] == ["item_id"]


def test_context_depth_and_size_are_bounded() -> None:
    deep: dict = {"page": "home"}
    node = deep
    for _ in range(7):
        node["x"] = {}
        node = node["x"]
    assert parse_events({**VIEW, "context": deep}, max_events=1)  # 8 levels
    node["x"] = {"y": 1}
    for context in (deep, {"blob": "x" * 5000}):
        with pytest.raises(ValidationFailed) as info:
            parse_events({**VIEW, "context": context}, max_events=1)
        assert (info.value.detail or [])[0]["loc"] == ["context"]


def test_a_context_deeper_than_the_interpreter_recursion_is_a_422() -> None:
    context: dict = {}
    node = context
    for _ in range(5000):  # a recursive depth count raised RecursionError: a 500
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ValidationFailed) as info:
        parse_events({**VIEW, "context": context}, max_events=1)
    (entry,) = info.value.detail or []
    assert entry["loc"] == ["context"] and "more than 8 levels" in entry["msg"]


def test_json_depth_is_iterative_and_stops_at_its_limit() -> None:
    from core.limits import json_depth

    assert [json_depth(v) for v in (1, "x", {}, [], {"a": [1, {"b": 2}]}, [[], [[[]]]])] == [
        0, 0, 1, 1, 3, 4]
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    assert json_depth(deep) == 100_001
    assert json_depth(deep, limit=32) == 33


def test_an_event_too_large_for_a_kafka_message_is_a_413() -> None:
    from api.errors import PayloadTooLarge

    topic = to_topic_events(parse_events({"events": [VIEW, VIEW]}, max_events=5),
                            received_at=1.8e9)
    with pytest.raises(PayloadTooLarge) as info:
        envelope_messages(topic, partitions=1, max_bytes=50)
    assert info.value.status_code == 413 and "event 0" in info.value.message


def test_catalog_records() -> None:
    update = ItemUpdate(name="Mug", price=4.5, in_stock=True)
    key, value, part = catalog_message(catalog_record("sku", update, updated_at=1.8e9))
    doc = orjson.loads(value)
    assert key == b"sku" and part is None and doc["item_id"] == "sku" and doc["deleted"] is False
    assert doc["name"] == "Mug" and doc["updated_at"] == 1.8e9
    gone = catalog_record("sku", None, updated_at=1.8e9, deleted=True)
    assert gone.deleted and not gone.in_stock
