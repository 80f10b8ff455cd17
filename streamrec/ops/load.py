"""``streamrec load FILE``: backfill historical events with their original timestamps.

Reads the public datasets of ``../shared/data`` (or JSONL of tracking events) and maps
them to streamrec event types (:mod:`streamrec.ops.load_formats` has the table). Every
event is checked as the API checks it (:class:`schemas.events.TrackingEvent`) before it
is sent, whichever way it goes: a line that is no event of its format, or whose event the
API would refuse, is left out and named at the end (exit code 1), so one bad line never
takes a batch of good ones with it. A file that cannot be loaded at all (absent, a
directory, empty, of an unknown format) is refused before anything is sent (exit code 2).

Event ids are ``<file name>:<line>`` (``:<k>`` for repeated plays), so loading a file
twice applies it once. By default events go through the public API in batches of up to
500 (with the first admin key when one is configured, else the first tracking key), so a
202 means Kafka has them; the API stamps them with its receive time, so for popular and
trending they are new traffic (abuse rules decide on receive time). ``--via kafka``
produces straight to the topic (envelopes grouped by partition, record timestamps =
event time, which the worker then takes as their receive time, so ``streamrec replay``
can seek by time and popularity follows the original history; each event is marked
``backfill``, so the manipulation rules trust its ids as an operator's record rather
than discount them as new ids), for backfills larger than the API should absorb.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from core import limits
from core.limits import DEFAULT_MAX_FUTURE_S
from core.net import local_http_url
from core.settings import Settings
from core.stack_defaults import first_key
from schemas.events import TrackingEvent
from streamrec.arg_types import api_url, whole
from streamrec.ops.load_formats import (
    READERS,
    Bad,
    BadLines,
    Event,
    LoadInputError,
    count_events,
    read_file,
)

__all__ = ["Event", "LoadInputError", "read_events", "to_tracking", "produce_direct",
           "post_via_api", "partition_envelopes", "partition_of"]


#: Requests of API.md that are not tracking events: a JSONL line of one is left out.
_NOT_TRACKING = {"identify": "link ids with POST /v1/identify",
                 "forget": "forget a user with DELETE /v1/users/{user_id}"}


def checked(event: Event, max_future_s: float = DEFAULT_MAX_FUTURE_S) -> Event:
    """The event as the API would accept it (its fields normalised, ``ts`` kept);
    ValueError naming the first problem when the API would refuse it."""
    kind = event.get("type")
    if kind in _NOT_TRACKING:
        raise ValueError(f"type {kind!r} is not a tracking event (POST /v1/events): "
                         f"{_NOT_TRACKING[kind]}")
    try:
        model = TrackingEvent.model_validate(to_tracking(event),
                                             context={"max_future_s": max_future_s})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None
    body: Event = model.model_dump(mode="json", exclude_none=True)
    body.pop("timestamp", None)
    body["ts"] = event["ts"]
    return body


def read_events(path: Path, fmt: str = "auto", limit: int | None = None,
                bad: Bad | None = None, max_future_s: float = DEFAULT_MAX_FUTURE_S
                ) -> Iterator[Event]:
    """At most ``limit`` events of the file that the API would accept, in file order
    (see :mod:`streamrec.ops.load_formats`); every line left out goes to ``bad``."""
    report = bad or (lambda _n, _r: None)
    n = 0
    for line_no, event in read_file(path, fmt, report):
        try:
            yield checked(event, max_future_s)
        except ValueError as exc:
            report(line_no, f"the API would refuse its event: {exc}")
            continue
        n += 1
        if limit is not None and n >= limit:
            return


def to_tracking(event: Event) -> dict[str, Any]:
    """The ``POST /v1/events`` form: ``ts`` becomes an ISO ``timestamp``."""
    body = {k: v for k, v in event.items() if k != "ts"}
    body["timestamp"] = datetime.fromtimestamp(event["ts"], UTC).isoformat()
    return body


def entity_of(event: Event) -> str:
    """The partition key the API would use."""
    return str(event.get("user_id") or event.get("anonymous_id") or "")


def partition_of(key: bytes, partitions: int) -> int:
    """The default Kafka partitioner (murmur2), as the API's and Faust's producers use."""
    from core.kafka_tools import partition_of as kafka_partition_of

    return kafka_partition_of(key, partitions)


def partition_envelopes(events: list[Event], partitions: int
                        ) -> list[tuple[int, bytes, bytes, float]]:
    """One ``EventEnvelope`` per partition: ``(partition, key, value, max ts)``.

    Every event still lands on the partition of its own entity (so per-entity order is
    kept and one worker owns an entity); the worker groups by entity, not by message key.
    Fewer, larger messages are what lets Faust (10–13k messages/s) carry tens of
    thousands of events/s.
    """
    groups: dict[int, tuple[bytes, list[Event]]] = {}
    for event in events:
        key = entity_of(event).encode()
        part = partition_of(key, partitions)
        groups.setdefault(part, (key, []))[1].append(event)
    return [(part, key, orjson.dumps({"v": 1, "events": evs}), max(e["ts"] for e in evs))
            for part, (key, evs) in sorted(groups.items())]


def produce_direct(settings: Settings, events: Iterator[Event], *, batch: int,
                   progress: Any) -> int:
    """Produce envelopes straight to the events topic; returns events sent.

    Each event is marked ``backfill`` (``schemas.TopicEvent.backfill``): an operator's
    history, which the worker's manipulation rules count with full trust."""
    from kafka import KafkaProducer

    from core import kafka_tools

    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all",
                             linger_ms=5, batch_size=1 << 20, max_request_size=8 << 20)
    partitions = len(producer.partitions_for(settings.topic_events) or ()) or 1
    sent = 0
    chunk: list[Event] = []

    def flush() -> None:
        marked = [{**event, "backfill": True} for event in chunk]
        for part, key, value, ts in partition_envelopes(marked, partitions):
            producer.send(settings.topic_events, key=key, value=value, partition=part,
                          timestamp_ms=int(ts * 1000))
        progress.update(len(chunk))

    try:
        for event in events:
            chunk.append(event)
            if len(chunk) >= batch:
                flush()
                sent += len(chunk)
                chunk = []
        if chunk:
            flush()
            sent += len(chunk)
        producer.flush()
    finally:
        producer.close()
    return sent


async def post_via_api(base_url: str, events: Iterator[Event], *, batch: int,
                       concurrency: int, key: str, progress: Any) -> int:
    """POST the events to ``/v1/events`` through :class:`streamrec.client.AsyncClient`
    (batches of ``batch``, ``concurrency`` in flight, its one retry rule; the file's event
    ids make a retry or a second load count once). Returns the events delivered; raises
    :class:`streamrec.client.DeliveryError` for events the API refused or that could not
    be delivered, :class:`streamrec.client.InvalidPayload` for an event it would refuse."""
    from streamrec.client import AsyncClient, InvalidPayload

    shown = 0
    client = AsyncClient(base_url, key or None, batch_size=batch, max_in_flight=concurrency,
                         max_queue=2 * batch * concurrency, timeout_s=30.0, trust_env=False)
    try:
        for event in events:
            try:
                await client.track_event(to_tracking(event))
            except InvalidPayload as exc:
                raise InvalidPayload(f"event {event.get('event_id')}: {exc}",
                                     exc.errors) from None
            delivered = client.stats.events_delivered
            if delivered > shown:
                progress.update(delivered - shown)
                shown = delivered
    finally:
        await client.close()  # delivers the rest; raises DeliveryError for what failed
    progress.update(client.stats.events_delivered - shown)
    return client.stats.events_delivered


#: Events per produced chunk at most with ``--via kafka`` (one envelope per partition).
MAX_KAFKA_BATCH = 10_000
MAX_CONCURRENCY = 64


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec load``."""
    parser.add_argument("file", type=Path, help="CSV/TSV dataset file or JSONL of events")
    parser.add_argument("--format", default="auto", choices=["auto", *READERS],
                        help="input format (default: guessed from name and first line)")
    parser.add_argument("--via", default="api", choices=["api", "kafka"],
                        help="post through the public API (default) or produce to Kafka")
    parser.add_argument("--api-url", type=api_url, default=None,
                        help="API base URL (default: the stack's)")
    per_request = limits.MAX_BATCH_EVENTS  # what the API takes per POST /v1/events
    parser.add_argument("--batch", type=whole(1, MAX_KAFKA_BATCH), default=per_request,
                        help=f"events per request (at most {per_request}) or, with --via "
                             f"kafka, per produced chunk (default: {per_request})")
    parser.add_argument("--concurrency", type=whole(1, MAX_CONCURRENCY), default=4,
                        help="requests in flight (default: 4)")
    parser.add_argument("--limit", type=whole(1, 10**12), default=None,
                        help="load at most N events (default: all)")


def _fail(message: str, code: int) -> int:
    print(f"streamrec load: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Load the file and print what was sent; exit code 2 when the file cannot be loaded
    at all, 1 when events were left out or not delivered."""
    from core.settings import get_settings
    from streamrec.client import StreamrecError
    from streamrec.progress import progress_bar

    settings = get_settings()
    path: Path = args.file
    per_request = limits.MAX_BATCH_EVENTS
    if args.via == "api" and args.batch > per_request:
        return _fail(f"--batch {args.batch}: the API takes at most {per_request} events "
                     "per request", 2)
    bad = BadLines()
    try:
        events = read_events(path, args.format, args.limit, bad, settings.max_future_skew_s)
        first = next(events, None)  # the format is known, the file readable
        total = count_events(path, args.format)
    except (LoadInputError, OSError) as exc:
        return _fail(str(exc) if isinstance(exc, LoadInputError)
                     else f"cannot read {path}: {exc.strerror or exc}", 2)
    if first is None:
        return _fail(f"no events in {path}" + (f": {bad.summary()}" if bad.count else ""), 1)
    events = _chain(first, events)
    if args.via == "kafka":
        from core.net import bootstrap_reachable

        if not bootstrap_reachable(settings.kafka_bootstrap):
            return _fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: run `streamrec "
                         "up`, or set STREAMREC_KAFKA_BOOTSTRAP", 1)
    elif not _api_answers(url := _api_url(args, settings)):
        # up front, as for Kafka: the client's retries took ~45 s to say the same
        return _fail(f"cannot reach the API at {url}: run `streamrec up`, or pass "
                     "--api-url", 1)
    if args.limit is not None:
        total = min(total, args.limit)
    started = time.perf_counter()
    with progress_bar(total=total, unit="ev", desc=f"load {path.name}") as bar:
        if args.via == "kafka":
            sent = produce_direct(settings, events, batch=args.batch, progress=bar)
        else:
            try:
                sent = asyncio.run(post_via_api(url, events,
                                                batch=args.batch,
                                                concurrency=args.concurrency,
                                                key=_api_key(settings), progress=bar))
            except StreamrecError as exc:
                return _fail(str(exc), 1)
    elapsed = time.perf_counter() - started
    print(f"loaded {sent} events from {path} via {args.via} in {elapsed:.1f}s "
          f"({sent / max(elapsed, 1e-9):.0f} events/s)")
    if bad.count:
        return _fail(f"{bad.summary()} of {path}; the other events were loaded", 1)
    return 0


def _chain(first: Event, rest: Iterator[Event]) -> Iterator[Event]:
    yield first
    yield from rest


def _api_answers(url: str, timeout_s: float = 3.0) -> bool:
    """Whether anything answers HTTP at ``url`` now (``GET /healthz``, any status),
    reached as the load's own client reaches it (no proxy from the environment)."""
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=timeout_s, trust_env=False)
    except httpx.TransportError:
        return False
    return True


def _api_url(args: argparse.Namespace, settings: Settings) -> str:
    """``--api-url``, else the embedded stack's API, else the configured port."""
    if args.api_url:
        return str(args.api_url)
    from streamrec.stack.embedded import load_state

    state = load_state(settings)
    return (state.api_url if state and state.api_url
            else local_http_url(settings.api_host, settings.api_port))


def _api_key(settings: Settings) -> str:
    """An admin key when there is one: a backfill is an operator's write, exempt from the
    per-address and per-id limits meant for shoppers' browsers."""
    return first_key(settings.admin_keys) or first_key(settings.tracking_keys)
