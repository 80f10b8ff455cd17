"""Turning raw topic messages into validated schema objects, or a reason they are bad."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import orjson
from pydantic import ValidationError

from core.limits import DEFAULT_MAX_FUTURE_S
from schemas import CatalogRecord, EventEnvelope, TopicEvent


class PoisonMessage(ValueError):
    """A message that can never be processed; it goes to the dead-letter topic."""


def _loads(raw: bytes | None) -> Any:
    if raw is None:
        raise PoisonMessage("empty message value")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or 'message'}: {err.get('msg')}")
    return "schema violation: " + "; ".join(parts)


def decode_events(raw: bytes | None, *, partition: int, offset: int,
                  timestamp: float | None = None,
                  max_ahead_s: float = DEFAULT_MAX_FUTURE_S) -> list[TopicEvent]:
    """The events carried by one ``events`` message (an envelope or a bare event).

    ``timestamp`` is the Kafka record's timestamp in epoch seconds (the API producer sets
    it to its receive time): events without ``received_at`` (older producers, other
    tools) take it as their receive time, so replays decide abuse rules alike. A bare
    event without ``event_id`` gets one derived from its partition and offset, so
    replaying the topic applies it once; one without ``ts`` takes the record timestamp
    (the current time when there is none).

    A receive time more than ``max_ahead_s`` ahead of this clock (``Settings.
    max_future_skew_s``; only a record produced around the API can carry one) is capped
    there: the trending decay trusts it, and one record dated years ahead moved the
    trending epoch there, zeroing every genuine event's weight after it.
    """
    data = _loads(raw)
    if not isinstance(data, dict):
        raise PoisonMessage("message is not a JSON object")
    latest = time.time() + max_ahead_s
    stamp = min(timestamp, latest) if timestamp is not None and timestamp > 0 else None
    try:
        if "events" in data:
            events = EventEnvelope.model_validate(data).events
        else:
            data = dict(data)
            data.setdefault("event_id", f"p{partition}-o{offset}")
            if "ts" not in data:
                data["ts"] = _timestamp_of(data.pop("timestamp", None), stamp)
            events = [TopicEvent.model_validate(data)]
    except ValidationError as exc:
        raise PoisonMessage(_describe(exc)) from exc
    out = []
    for i, ev in enumerate(events):
        if ev.received_at is None and stamp is not None:
            # One message's events in message order, a microsecond apart (as the API
            # stamps them).
            ev = ev.model_copy(update={"received_at": stamp + i * 1e-6})
        if ev.receive_time > latest:
            ev = ev.model_copy(update={"received_at": latest})
        out.append(ev)
    return out


def _timestamp_of(value: Any, default: float | None = None) -> float:
    if value is None:
        return default if default is not None else time.time()
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise PoisonMessage(f"timestamp: not ISO-8601: {value!r}") from exc


def decode_catalog(raw: bytes | None) -> CatalogRecord:
    """The catalog record carried by one ``catalog`` message."""
    data = _loads(raw)
    if not isinstance(data, dict):
        raise PoisonMessage("message is not a JSON object")
    try:
        return CatalogRecord.model_validate(data)
    except ValidationError as exc:
        raise PoisonMessage(_describe(exc)) from exc


#: Original bytes a dead-letter record keeps: Kafka refuses messages over ~1 MB (the
#: producer's ``max_request_size``, the broker's ``message.max.bytes``), and a record of a
#: message near that size, as base64 or with every byte escaped (``\u0001`` is six), was
#: larger still: the dead-letter send failed and crashed the agent. 64 KiB escaped six
#: times over stays far below the limit; the whole message's size and digest are kept.
DEAD_LETTER_ORIGINAL_MAX = 64 * 1024
#: Longest reason kept (a reason may quote the bad value or a key of the message).
DEAD_LETTER_REASON_MAX = 1024
#: Longest dead-letter key kept (the original message's key, which a producer may make big).
DEAD_LETTER_KEY_MAX = 1024


def dead_letter_reason(reason: str) -> str:
    """``reason`` cut to :data:`DEAD_LETTER_REASON_MAX` characters (for the record, the
    log and the status list alike)."""
    if len(reason) <= DEAD_LETTER_REASON_MAX:
        return reason
    return reason[:DEAD_LETTER_REASON_MAX - 1] + "…"


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The dead-letter record's key: the original's, cut to :data:`DEAD_LETTER_KEY_MAX`."""
    return key if key is None else key[:DEAD_LETTER_KEY_MAX]


def dead_letter_value(
    raw: bytes | None, *, reason: str, topic: str, partition: int, offset: int
) -> bytes:
    """The dead-letter record: why, where from, and the original bytes (as text when they
    are UTF-8, else base64). An original over :data:`DEAD_LETTER_ORIGINAL_MAX` bytes
    keeps that many with ``original_truncated``, ``original_size`` and
    ``original_sha256``, so the record always fits in a Kafka message."""
    record: dict[str, Any] = {
        "reason": dead_letter_reason(reason),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "dead_lettered_at": time.time(),
    }
    if raw is None:
        record["original"] = None
        return orjson.dumps(record)
    kept = raw
    if len(raw) > DEAD_LETTER_ORIGINAL_MAX:
        kept = raw[:DEAD_LETTER_ORIGINAL_MAX]
        record.update(original_truncated=True, original_size=len(raw),
                      original_sha256=hashlib.sha256(raw).hexdigest())
    try:
        record["original"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        record["original_b64"] = base64.b64encode(kept).decode("ascii")
    return orjson.dumps(record)
