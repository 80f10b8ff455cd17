"""The wire models: validation rules of API.md, and exported JSON Schema files in sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.limits import MAX_PROPERTIES_BYTES, MAX_PROPERTIES_DEPTH
from schemas import (
    CatalogItem,
    CatalogRecord,
    EventBatch,
    IdentifyRequest,
    ItemUpdate,
    TopicEvent,
    TrackingEvent,
)
from schemas.export import MODELS, stale_files


def test_json_schema_files_match_models() -> None:
    assert stale_files() == [], "run: python -m schemas.export"


def test_every_json_body_of_the_api_has_a_schema_file() -> None:
    """Every model a route takes as its JSON body or answers with (2xx) is exported: the
    list answers of promotions and experiments and `GET /healthz` once had no file."""
    from api.app import create_app
    from core.settings import Settings

    doc = create_app(Settings()).openapi()
    exported = {model.__name__ for model in MODELS.values()}
    used: dict[str, str] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            bodies = [op.get("requestBody", {})] + [
                answer for code, answer in op["responses"].items() if code.startswith("2")]
            for body in bodies:
                ref = body.get("content", {}).get("application/json", {}).get(
                    "schema", {}).get("$ref", "")
                if ref:
                    used.setdefault(ref.rsplit("/", 1)[-1], f"{method.upper()} {path}")
    missing = {name: route for name, route in used.items() if name not in exported}
    assert not missing, f"models without a schemas/json file (schemas/export.py): {missing}"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "view", "user_id": "u1", "item_id": "a"},
        {"type": "impression", "anonymous_id": "x", "item_ids": ["a", "b"]},
        {"type": "purchase", "user_id": "u1", "item_id": "a", "quantity": 2, "price": 9.99,
         "timestamp": "2026-01-01T10:00:00Z", "context": {"page": "checkout", "x": 1}},
    ],
)
def test_valid_events(payload: dict) -> None:
    TrackingEvent.model_validate(payload)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"type": "view", "item_id": "a"}, "user_id or anonymous_id"),
        ({"type": "view", "user_id": "u1"}, "item_id is required"),
        ({"type": "impression", "user_id": "u1"}, "item_ids"),
        ({"type": "teleport", "user_id": "u1", "item_id": "a"}, "type"),
        ({"type": "view", "user_id": "", "item_id": "a"}, "at least 1"),
        ({"type": "view", "user_id": "u" * 257, "item_id": "a"}, "at most 256"),
        ({"type": "view", "user_id": "u", "item_id": "a", "price": -1}, "greater than"),
        ({"type": "view", "user_id": "u", "item_id": "a", "quantity": 0}, "greater than"),
        ({"type": "view", "user_id": "u", "item_id": "a", "timestamp": "yesterday"}, "datetime"),
        ({"type": "purchase", "user_id": "u", "item_id": "a", "quantity": True}, "not a boolean"),
        ({"type": "purchase", "user_id": "u", "item_id": "a", "price": False}, "not a boolean"),
    ],
)
def test_invalid_events_say_what_is_wrong(payload: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        TrackingEvent.model_validate(payload)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"type": "view", "item_id": "a"}, ("user_id",)),
        ({"type": "purchase", "user_id": "u1"}, ("item_id",)),
        ({"type": "impression", "anonymous_id": "a1"}, ("item_ids",)),
    ],
)
def test_rules_across_fields_name_the_missing_field(payload: dict, loc: tuple) -> None:
    with pytest.raises(ValidationError) as err:
        TrackingEvent.model_validate(payload)
    (error,) = err.value.errors()
    assert error["loc"] == loc and error["type"] == "value_error"
    with pytest.raises(ValidationError) as err:
        EventBatch.model_validate({"events": [{"type": "view", "user_id": "u", "item_id": "a"},
                                              payload]})
    assert [e["loc"] for e in err.value.errors()] == [("events", 1, *loc)]


def test_future_timestamp_rejected() -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    with pytest.raises(ValidationError, match="future"):
        TrackingEvent.model_validate({"type": "view", "user_id": "u", "item_id": "a",
                                      "timestamp": future})


def test_batch_limits() -> None:
    one = {"type": "view", "user_id": "u", "item_id": "a"}
    EventBatch.model_validate({"events": [one] * 500})
    with pytest.raises(ValidationError):
        EventBatch.model_validate({"events": [one] * 501})
    with pytest.raises(ValidationError):
        EventBatch.model_validate({"events": []})


def test_topic_event_from_tracking_keeps_ids_and_times() -> None:
    ev = TrackingEvent.model_validate({"type": "view", "anonymous_id": "a1", "item_id": "x",
                                       "timestamp": "2026-01-01T00:00:00+00:00"})
    topic = TopicEvent.from_tracking(ev, event_id="e1", received_at=1.8e9)
    assert topic.entity == "a1" and topic.ts == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    ident = TopicEvent(event_id="i", type="identify", anonymous_id="a1", user_id="u1", ts=1.0)
    assert ident.entity == "a1"


def test_a_client_cannot_mark_its_events_as_a_trusted_backfill() -> None:
    """Only ``streamrec load --via kafka`` sets ``backfill`` (full trust in the abuse
    rules); the public tracking key must not reach it through ``POST /v1/events``."""
    ev = TrackingEvent.model_validate({"type": "view", "user_id": "u", "item_id": "x",
                                       "backfill": True, "forwarded": True})
    topic = TopicEvent.from_tracking(ev, event_id="e1", received_at=1.8e9)
    assert topic.backfill is None and topic.forwarded is None
    assert "backfill" not in topic.model_dump(exclude_none=True)


def test_identify_and_catalog() -> None:
    IdentifyRequest.model_validate({"anonymous_id": "a", "user_id": "u"})
    with pytest.raises(ValidationError):
        IdentifyRequest.model_validate({"anonymous_id": "a"})
    assert ItemUpdate.model_validate({}).in_stock is True
    with pytest.raises(ValidationError):
        ItemUpdate.model_validate({"currency": "EURO"})
    with pytest.raises(ValidationError, match="not a boolean"):
        ItemUpdate.model_validate({"price": True})
    assert ItemUpdate.model_validate({"currency": "eur", "price": 3}).currency == "EUR"


def test_identify_needs_two_different_ids() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        IdentifyRequest.model_validate({"anonymous_id": "same", "user_id": "same"})


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize("model", [ItemUpdate, CatalogItem])
def test_catalog_writes_bound_properties_and_refuse_control_characters(model: type) -> None:
    base = {"item_id": "sku-1"}
    fits = "x" * (MAX_PROPERTIES_BYTES - len('{"a":""}'))
    assert model.model_validate({**base, "properties": {"a": fits}}).properties["a"] == fits
    assert model.model_validate({**base, "properties": _nested(MAX_PROPERTIES_DEPTH)})
    for props, fragment in [({"a": fits + "x"}, "bytes as JSON"),
                            (_nested(MAX_PROPERTIES_DEPTH + 1), "levels deep")]:
        with pytest.raises(ValidationError, match=fragment) as err:
            model.model_validate({**base, "properties": props})
        assert err.value.errors()[0]["loc"] == ("properties",)
    for field in ("name", "category"):
        assert model.model_validate({**base, field: "Café · bar.baz"})
        for bad in ("a\nb", "a\x00b", "a\x7fb", "a\x85b"):
            with pytest.raises(ValidationError, match="control characters") as err:
                model.model_validate({**base, field: bad})
            assert err.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("model", [ItemUpdate, CatalogItem])
def test_catalog_categories_are_ones_a_filter_can_name(model: type) -> None:
    """``category=a,b`` splits on commas and trims each name: a stored category must be
    a name the filter can send, or the item is never selectable by its category."""
    base = {"item_id": "sku-1"}
    assert model.model_validate({**base, "category": "  shoes.running "}).category == (
        "shoes.running")
    for blank in ("", "   "):
        assert model.model_validate({**base, "category": blank}).category is None
    # API.md's catalog takes any category: a comma is kept (a filter cannot name it)
    assert model.model_validate({**base, "category": "Home, Garden"}).category == (
        "Home, Garden")


def test_catalog_records_on_the_topic_replay_as_written() -> None:
    """The write bounds are not the topic's: a record written before them still decodes."""
    record = CatalogRecord.model_validate({
        "item_id": "old", "name": "tab\tname", "updated_at": 1.0,
        "properties": {"blob": "x" * (2 * MAX_PROPERTIES_BYTES)}})
    assert record.name == "tab\tname"


def test_a_numeric_timestamp_is_seconds_or_milliseconds_as_documented() -> None:
    """The docs said epoch seconds; pydantic reads a number from 2e10 up as milliseconds
    (`Date.now()` of a browser): 1.7e12 was accepted as 2023-11-14 where the docs had a
    reader expect a 422 (55,000 years ahead). The rule is now said where clients read."""
    def when(stamp: object) -> float:
        event = TrackingEvent.model_validate({"type": "view", "user_id": "u",
                                              "item_id": "a", "timestamp": stamp})
        assert event.timestamp is not None
        return event.timestamp.timestamp()

    assert when(1_700_000_000) == when(1_700_000_000_000) == when("1700000000") == 1.7e9
    # seconds below 2e10 (year 2603: refused as ahead of the clock), milliseconds from there
    assert when(20_000_000_001) == 20_000_000.001  # ... milliseconds from there
    described = TrackingEvent.model_json_schema()["properties"]["timestamp"]["description"]
    assert "milliseconds" in described and "2e10" in described
