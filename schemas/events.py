"""Tracking events: what SDKs post, and what travels on the ``events`` topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from core.limits import (
    DEFAULT_MAX_FUTURE_S,
    MAX_BATCH_EVENTS,
    MAX_CONTEXT_BYTES,
    MAX_CONTEXT_DEPTH,
    MAX_CONTEXT_LEN,
    MAX_ID_LEN,
    MAX_IMPRESSION_ITEMS,
    json_bound_problem,
)
from schemas.common import Identifier, Price, not_a_bool
from schemas.experiments import ExposureInfo

EventType = Literal["view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

#: Internal event types that only the API/worker put on the topic: ``identify`` links an
#: anonymous id to a user; ``exposure`` says the entity got its first answer in an
#: experiment (``TopicEvent.experiment``, docs/experiments.md); ``forget``: the admin forgot
#: this user or anonymous id (``stream.forget``).
TopicEventType = Literal[
    "view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click", "identify",
    "exposure", "forget",
]

#: Largest quantity of one purchase event (its effect on popular/trending is capped far
#: lower, see ``Settings.abuse_max_quantity``).
MAX_QUANTITY = 1_000_000

#: How many units one purchase or cart event is about: a whole number 1..MAX_QUANTITY.
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(not_a_bool)]


def check_timestamp(value: datetime | None, info: ValidationInfo) -> datetime | None:
    """A client timestamp made timezone-aware (naive = UTC) and checked: any age back to
    just after 1970-01-01T00:00:00Z (backfills of old logs), at most ``max_future_s``
    ahead of the server clock.

    The bound comes from the validation context (``{"max_future_s": ..., "now": ...}``,
    which the API fills from ``Settings.max_future_skew_s``), else
    :data:`core.limits.DEFAULT_MAX_FUTURE_S`. Abuse decisions use the server's receive
    time whatever the client says; this bound keeps event order plausible.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ctx = info.context or {}
    max_future = float(ctx.get("max_future_s", DEFAULT_MAX_FUTURE_S))
    now = float(ctx.get("now") or datetime.now(UTC).timestamp())
    ahead = value.timestamp() - now
    if ahead > max_future:
        raise ValueError(
            f"timestamp is {ahead:.0f} s ahead of the server clock; at most "
            f"{max_future:g} s in the future is accepted (STREAMREC_MAX_FUTURE_SKEW_S)")
    if value.timestamp() <= 0:
        # 1970-01-01T00:00:00Z itself too: topic times are > 0 (TopicEvent.ts)
        raise ValueError("timestamp must be after 1970-01-01T00:00:00Z")
    return value


class EventContext(BaseModel):
    """Where the event happened; free-form beyond the two documented fields, at most
    8 levels deep and 4 KB as JSON (``core.limits``)."""

    model_config = ConfigDict(extra="allow")

    page: str | None = Field(None, max_length=MAX_CONTEXT_LEN, examples=["product"])
    channel: str | None = Field(None, max_length=MAX_CONTEXT_LEN, examples=["web"])

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        problem = json_bound_problem(data, "context", MAX_CONTEXT_DEPTH, MAX_CONTEXT_BYTES)
        if problem is not None:
            raise ValueError(problem)
        return data


def _field_error(field: str, reason: str) -> ValidationError:
    """A rule across fields, reported at the field that is missing (API.md: a 422 lists
    errors per event and per field), as a ``value_error`` like any other rule."""
    error = PydanticCustomError("value_error", "Value error, {reason}", {"reason": reason})
    return ValidationError.from_exception_data(
        "TrackingEvent", [InitErrorDetails(type=error, loc=(field,), input=None)])


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
        None, max_length=MAX_IMPRESSION_ITEMS, description="For impressions: the items shown"
    )
    recommendation_id: Identifier | None = Field(
        None, description="The list this event came from, for attribution"
    )
    quantity: Quantity | None = None
    price: Price | None = None
    timestamp: datetime | None = Field(
        None, description="ISO-8601 (no zone: UTC); server time if absent. A number is "
        "epoch seconds below 2e10 and epoch milliseconds from 2e10 up (1.7e12 is "
        "2023-11-14). Any age in the past after 1970; at most a few minutes ahead of the "
        "server clock (STREAMREC_MAX_FUTURE_SKEW_S)")
    context: EventContext | None = None

    _timestamp = field_validator("timestamp")(check_timestamp)

    @model_validator(mode="after")
    def _who_and_what(self) -> TrackingEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise _field_error("user_id", "one of user_id or anonymous_id is required")
        if self.type == "impression":
            if not self.item_ids and self.item_id is None:
                raise _field_error("item_ids", "an impression needs item_ids (the items shown)")
        elif self.item_id is None:
            raise _field_error("item_id", f"item_id is required for a {self.type} event")
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

    _timestamp = field_validator("timestamp")(check_timestamp)

    @model_validator(mode="after")
    def _two_ids(self) -> IdentifyRequest:
        if self.anonymous_id == self.user_id:
            raise ValueError("anonymous_id and user_id must differ")
        return self


def dedupe_namespace(user_id: str | None, anonymous_id: str | None) -> str:
    """The rule of :attr:`TopicEvent.dedupe_namespace`, for readers holding plain fields."""
    return anonymous_id or user_id or ""


class TopicEvent(BaseModel):
    """An event as stored on the ``events`` topic: ids and times always filled in.

    ``ts`` is the event time the client gave (or the receive time) and ``received_at``
    the API's receive time, both epoch seconds. ``received_at`` is optional so that
    records of older producers still decode; the worker fills it from the Kafka record
    timestamp then (``stream.decode``). The worker trusts only the receive time for
    abuse decisions (:attr:`receive_time`) and orders histories by :attr:`order_ts`.
    ``identify`` events carry both ``anonymous_id`` and ``user_id`` and are keyed by the
    anonymous id; ``exposure`` records carry the entity as ``user_id`` (whatever kind of
    id it is) and ``experiment``, and are keyed by that entity.
    """

    event_id: Identifier
    type: TopicEventType
    user_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    item_id: Identifier | None = None
    item_ids: list[Identifier] | None = Field(None, max_length=MAX_IMPRESSION_ITEMS)
    recommendation_id: str | None = Field(None, max_length=MAX_ID_LEN)
    quantity: Quantity | None = None
    price: Price | None = None
    ts: float = Field(..., gt=0, allow_inf_nan=False)
    received_at: float | None = Field(None, gt=0, allow_inf_nan=False)
    context: dict[str, Any] | None = None
    experiment: ExposureInfo | None = None
    #: Set on the copies the worker forwards to an identified user (the anonymous id's
    #: history at ``identify``, later anonymous events): their original, on the
    #: anonymous id's partition, already counted them, so a copy never claims the event
    #: id, whichever of the two a replay reads first.
    forwarded: Literal[True] | None = None
    #: Set by ``streamrec load --via kafka`` on the events of an operator's backfill (no
    #: API request can carry it: the API builds its records field by field). The
    #: manipulation rules then count the event with full trust: a shop's real history,
    #: whose ids are all new to the worker, is ranked by what its shoppers did
    #: (``recommender.abuse.assess``, ``trusted``).
    backfill: Literal[True] | None = None

    @model_validator(mode="after")
    def _who_and_what(self) -> TopicEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("one of user_id or anonymous_id is required")
        if self.type == "exposure":
            if self.experiment is None or self.user_id is None:
                raise ValueError("exposure needs experiment and user_id (the entity)")
        elif self.type == "identify":
            if self.user_id is None or self.anonymous_id is None:
                raise ValueError("identify needs both anonymous_id and user_id")
        elif self.type == "impression":
            if not self.item_ids and self.item_id is None:
                raise ValueError("an impression needs item_ids")
        elif self.item_id is None and self.type != "forget":
            raise ValueError(f"item_id is required for a {self.type} event")
        return self

    @property
    def entity(self) -> str:
        """Partition key: the anonymous id for identify events, else user over anonymous."""
        if self.type == "identify":
            return self.anonymous_id or ""
        return self.user_id or self.anonymous_id or ""

    @property
    def receive_time(self) -> float:
        """When the API received the event (``ts`` for records without ``received_at``):
        the only clock abuse decisions and per-window caps trust."""
        return self.received_at if self.received_at is not None else self.ts

    @property
    def order_ts(self) -> float:
        """``min(ts, receive_time)``: the event time histories and carts are ordered by
        and trending decays from. A client may date events any age back (backfills) but
        never ahead of arrival."""
        ts, received = self.ts, self.received_at  # min() inline: read for every event
        return ts if received is None or ts <= received else received

    @property
    def dedupe_namespace(self) -> str:
        """Whose event ids this event's id is unique among: the anonymous id when there is
        one (so the copies the worker forwards to an identified user dedupe against the
        original), else the user id. One client cannot suppress another's events by
        sending their ids first."""
        return dedupe_namespace(self.user_id, self.anonymous_id)

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
