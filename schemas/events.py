"""Tracking events: what SDKs post, and what travels on the ``events`` topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.limits import MAX_BATCH_EVENTS, MAX_CONTEXT_LEN, MAX_ID_LEN, MAX_IMPRESSION_ITEMS
from schemas.common import Identifier, Price

EventType = Literal["view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

#: Internal event types that only the API/worker put on the topic.
TopicEventType = Literal[
    "view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click", "identify"
]

#: Events dated further ahead than this are rejected: a clock that wrong would pin an item
#: to the top of "trending".
MAX_CLOCK_SKEW = timedelta(days=1)


class EventContext(BaseModel):
    """Where the event happened; free-form beyond the two documented fields."""

    model_config = ConfigDict(extra="allow")

    page: str | None = Field(None, max_length=MAX_CONTEXT_LEN, examples=["product"])
    channel: str | None = Field(None, max_length=MAX_CONTEXT_LEN, examples=["web"])


class TrackingEvent(BaseModel):
    """One shopper action, as a tracking SDK posts it to ``POST /v1/events``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "view", "user_id": "u42", "item_id": "sku-1"},
                {
                    "event_id": "3f0c8a7e-purchase-1",
                    "type": "purchase",
                    "user_id": "u42",
                    "item_id": "sku-1",
                    "quantity": 2,
                    "price": 9.99,
                    "timestamp": "2026-11-23T09:15:00Z",
                    "context": {"page": "checkout", "channel": "web"},
                },
            ]
        }
    )

    event_id: Identifier | None = Field(
        None, description="Client id of the event; makes retries idempotent"
    )
    type: EventType
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    item_id: Identifier | None = Field(None, description="Required except for impressions")
    item_ids: list[Identifier] | None = Field(
        None, max_length=100, description="For impressions: the items shown"
    )
    recommendation_id: str | None = Field(
        None, max_length=MAX_ID_LEN, description="The list this event came from, for attribution"
    )
    quantity: int | None = Field(None, ge=1, le=1_000_000)
    price: Price | None = None
    timestamp: datetime | None = Field(None, description="ISO-8601; server time if absent")
    context: EventContext | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware_and_not_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("timestamp is more than a day in the future")
        if value.year < 2000:
            raise ValueError("timestamp is before the year 2000")
        return value

    @model_validator(mode="after")
    def _who_and_what(self) -> TrackingEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("one of user_id or anonymous_id is required")
        if self.type == "impression":
            if not self.item_ids and self.item_id is None:
                raise ValueError("an impression needs item_ids (the items shown)")
        elif self.item_id is None:
            raise ValueError(f"item_id is required for a {self.type} event")
        return self

    @property
    def entity(self) -> str:
        """The id whose history this event extends (user if known, else anonymous)."""
        return self.user_id or self.anonymous_id or ""


class EventBatch(BaseModel):
    """``{"events": [...]}``: several events posted at once."""

    events: list[TrackingEvent] = Field(..., min_length=1, max_length=MAX_BATCH_EVENTS)


class IdentifyRequest(BaseModel):
    """Links an anonymous visitor to a user: the anonymous history counts for the user."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"anonymous_id": "anon-7f3a", "user_id": "u42"}]}
    )

    anonymous_id: Identifier
    user_id: Identifier
    timestamp: datetime | None = None


class TopicEvent(BaseModel):
    """An event as stored on the ``events`` topic: ids and times always filled in.

    ``ts`` is the event time and ``received_at`` the API's receive time, both epoch
    seconds; ``received_at`` lets the worker measure freshness. ``identify`` events carry
    both ``anonymous_id`` and ``user_id`` and are keyed by the anonymous id.
    """

    event_id: Identifier
    type: TopicEventType
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    item_id: Identifier | None = None
    item_ids: list[Identifier] | None = Field(None, max_length=MAX_IMPRESSION_ITEMS)
    recommendation_id: str | None = Field(None, max_length=MAX_ID_LEN)
    quantity: int | None = Field(None, ge=1, le=1_000_000)
    price: Price | None = None
    ts: float = Field(..., gt=0, allow_inf_nan=False)
    received_at: float | None = Field(None, gt=0, allow_inf_nan=False)
    context: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _who_and_what(self) -> TopicEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("one of user_id or anonymous_id is required")
        if self.type == "identify":
            if self.user_id is None or self.anonymous_id is None:
                raise ValueError("identify needs both anonymous_id and user_id")
        elif self.type == "impression":
            if not self.item_ids and self.item_id is None:
                raise ValueError("an impression needs item_ids")
        elif self.item_id is None:
            raise ValueError(f"item_id is required for a {self.type} event")
        return self

    @property
    def entity(self) -> str:
        """Partition key: the anonymous id for identify events, else user over anonymous."""
        if self.type == "identify":
            return self.anonymous_id or ""
        return self.user_id or self.anonymous_id or ""

    @classmethod
    def from_tracking(
        cls, event: TrackingEvent, *, event_id: str, received_at: float
    ) -> TopicEvent:
        """The topic form of a validated tracking event."""
        ts = event.timestamp.timestamp() if event.timestamp else received_at
        return cls(
            event_id=event_id,
            type=event.type,
            user_id=event.user_id,
            anonymous_id=event.anonymous_id,
            item_id=event.item_id,
            item_ids=event.item_ids,
            recommendation_id=event.recommendation_id,
            quantity=event.quantity,
            price=event.price,
            ts=ts,
            received_at=received_at,
            context=event.context.model_dump(exclude_none=True) if event.context else None,
        )


class EventEnvelope(BaseModel):
    """One message on the ``events`` topic: events whose entities share its partition.

    Grouping a request's events per partition into one message keeps the per-message
    cost of the producer and the stream processor off the per-event path. A bare
    TopicEvent object is accepted on the topic too (producers other than the API).
    """

    v: Literal[1] = 1
    events: list[TopicEvent] = Field(..., min_length=1)
