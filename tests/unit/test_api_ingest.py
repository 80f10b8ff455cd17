"""Payload → topic messages, without Kafka: validation, ids, grouping by key."""

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
                        {**VIEW, "quantity": "many", "timestamp": "1999-12-31T00:00:00Z"}]}
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
    topic = to_topic_events(events, received_at=1.8e9, new_id=lambda: f"gen-{next(counter)}")
    assert [e.event_id for e in topic] == ["gen-0", "mine"]
    assert topic[0].ts == 1.8e9 and topic[0].received_at == 1.8e9
    assert topic[1].ts == datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def test_one_envelope_per_key_in_first_seen_order() -> None:
    raw = [{"type": "view", "user_id": "u2", "item_id": "a"}, VIEW,
           {"type": "view", "anonymous_id": "anon", "item_id": "b"},
           {"type": "view", "user_id": "u2", "anonymous_id": "anon", "item_id": "c"}]
    topic = to_topic_events(parse_events({"events": raw}, max_events=10), received_at=1.8e9)
    messages = envelope_messages(topic)
    assert [k for k, _ in messages] == [b"u2", b"u1", b"anon"]
    first = EventEnvelope.model_validate(orjson.loads(messages[0][1]))
    assert [e.item_id for e in first.events] == ["a", "c"]
    assert b"null" not in messages[0][1]  # absent fields are left out


def test_large_envelopes_are_split_in_order() -> None:
    raw = [{**VIEW, "item_id": f"item-{i:04d}-" + "x" * 200} for i in range(200)]
    topic = to_topic_events(parse_events({"events": raw}, max_events=500), received_at=1.8e9)
    messages = envelope_messages(topic, max_bytes=10_000)
    assert len(messages) > 4 and all(k == b"u1" for k, _ in messages)
    assert all(len(v) <= 10_000 for _, v in messages)
    items = [e["item_id"] for _, v in messages for e in orjson.loads(v)["events"]]
    assert items == [r["item_id"] for r in raw]


def test_identify_event() -> None:
    event = identify_event(IdentifyRequest(anonymous_id="anon", user_id="u"), received_at=1.8e9)
    assert event.type == "identify" and event.entity == "anon" and event.ts == 1.8e9
    ((key, _),) = envelope_messages([event])
    assert key == b"anon"
    old = IdentifyRequest(anonymous_id="a", user_id="u", timestamp=datetime(1990, 1, 1))
    with pytest.raises(ValidationFailed):
        identify_event(old, received_at=1.8e9)


def test_catalog_records() -> None:
    update = ItemUpdate(name="Mug", price=4.5, in_stock=True)
    key, value = catalog_message(catalog_record("sku", update, updated_at=1.8e9))
    doc = orjson.loads(value)
    assert key == b"sku" and doc["item_id"] == "sku" and doc["deleted"] is False
    assert doc["name"] == "Mug" and doc["updated_at"] == 1.8e9
    gone = catalog_record("sku", None, updated_at=1.8e9, deleted=True)
    assert gone.deleted and not gone.in_stock
