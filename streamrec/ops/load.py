"""``streamrec load FILE``: backfill historical events with their original timestamps.

Reads the public datasets of ``../shared/data`` (or JSONL of tracking events) and maps
them to streamrec event types:

=============  ===============================================================
format         mapping
=============  ===============================================================
taobao         ``user,item,category,behavior,ts`` CSV: pv → view, cart →
               add_to_cart, fav → add_to_cart (a saved-for-later item is
               purchase intent, closer to a cart add than to a view), buy →
               purchase
lastfm         ``user artist plays``: no timestamps, so one view per
               ``1 + floor(log2(plays))`` (at most 10), dated 2011-05-01 (the
               HetRec release) plus the line number in seconds
yoochoose      ``SessionId ItemId Time``: anonymous sessions of views
jsonl          one tracking event object per line (the ``POST /v1/events`` form)
=============  ===============================================================

Event ids are ``<file name>:<line>`` (``:<k>`` for repeated plays), so loading a file
twice applies it once. By default events go through the public API in batches of up to
500 (with the first admin key when one is configured, else the first tracking key), so a
202 means Kafka has them; the API stamps them with its receive time, so for popular and
trending they are new traffic (abuse rules decide on receive time). ``--via kafka``
produces straight to the topic (envelopes grouped by partition, record timestamps =
event time, which the worker then takes as their receive time, so ``streamrec replay``
can seek by time and popularity follows the original history), for backfills larger
than the API should absorb.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.settings import Settings

TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}
LASTFM_EPOCH = datetime(2011, 5, 1, tzinfo=UTC).timestamp()
LASTFM_MAX_REPEAT = 10

#: A loaded event: the tracking form plus an epoch-seconds ``ts``.
Event = dict[str, Any]


def detect_format(path: Path) -> str:
    """Guess the format from the file name and first line."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if "user_artists" in name:
        return "lastfm"
    if "yoochoose" in name:
        return "yoochoose"
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
    if first.startswith("{"):
        return "jsonl"
    if first.count(",") == 4:
        return "taobao"
    raise ValueError(f"cannot tell the format of {path}; pass --format")


def _taobao(path: Path) -> Iterator[Event]:
    with open(path, newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if len(row) != 5 or row[3] not in TAOBAO_TYPES:
                continue
            user, item, _category, behavior, ts = row
            yield {"event_id": f"{path.name}:{line_no}", "type": TAOBAO_TYPES[behavior],
                   "user_id": user, "item_id": item, "ts": float(ts)}


def _lastfm(path: Path) -> Iterator[Event]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if len(parts) != 3 or not parts[2].isdigit():
                continue  # header or malformed
            user, artist, plays = parts
            repeat = min(LASTFM_MAX_REPEAT, 1 + int(math.log2(max(1, int(plays)))))
            for k in range(repeat):
                yield {"event_id": f"{path.name}:{line_no}:{k}", "type": "view",
                       "user_id": user, "item_id": artist,
                       "ts": LASTFM_EPOCH + line_no + k / 100}


def _yoochoose(path: Path) -> Iterator[Event]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if len(parts) != 3 or not parts[0].isdigit():
                continue  # header
            session, item, ts = parts
            yield {"event_id": f"{path.name}:{line_no}", "type": "view",
                   "anonymous_id": f"yc-{session}", "item_id": item, "ts": float(ts)}


def _jsonl(path: Path) -> Iterator[Event]:
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            event = dict(orjson.loads(line))
            event.setdefault("event_id", f"{path.name}:{line_no}")
            stamp = event.pop("timestamp", None)
            if "ts" not in event:
                event["ts"] = (datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
                               .timestamp() if stamp else time.time())
            yield event


READERS = {"taobao": _taobao, "lastfm": _lastfm, "yoochoose": _yoochoose, "jsonl": _jsonl}


def read_events(path: Path, fmt: str = "auto", limit: int | None = None) -> Iterator[Event]:
    """The file's events in file order, mapped to streamrec types (see module doc)."""
    reader = READERS[detect_format(path) if fmt == "auto" else fmt]
    for n, event in enumerate(reader(path)):
        if limit is not None and n >= limit:
            return
        yield event


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
    """Produce envelopes straight to the events topic; returns events sent."""
    from kafka import KafkaProducer

    from core import kafka_tools

    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all",
                             linger_ms=5, batch_size=1 << 20, max_request_size=8 << 20)
    partitions = len(producer.partitions_for(settings.topic_events) or ()) or 1
    sent = 0
    chunk: list[Event] = []

    def flush() -> None:
        for part, key, value, ts in partition_envelopes(chunk, partitions):
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


def count_lines(path: Path) -> int:
    """Lines in a file (the progress bar's total; an upper bound for most formats)."""
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec load``."""
    parser.add_argument("file", type=Path, help="CSV/TSV dataset file or JSONL of events")
    parser.add_argument("--format", default="auto", choices=["auto", *READERS],
                        help="input format (default: guessed from name and first line)")
    parser.add_argument("--via", default="api", choices=["api", "kafka"],
                        help="post through the public API (default) or produce to Kafka")
    parser.add_argument("--api-url", default=None, help="API base URL (default: the stack's)")
    parser.add_argument("--batch", type=int, default=500, help="events per request/chunk")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--limit", type=int, default=None, help="load at most N events")


def run(args: argparse.Namespace) -> int:
    """Load the file and print what was sent."""
    from core.settings import get_settings
    from streamrec.client import StreamrecError
    from streamrec.progress import progress_bar

    settings = get_settings()
    path: Path = args.file
    if not path.exists():
        print(f"streamrec load: no such file: {path}")
        return 2
    total = count_lines(path)
    if args.limit is not None:
        total = min(total, args.limit)
    events = read_events(path, args.format, args.limit)
    started = time.perf_counter()
    with progress_bar(total=total, unit="ev", desc=f"load {path.name}") as bar:
        if args.via == "kafka":
            sent = produce_direct(settings, events, batch=args.batch, progress=bar)
        else:
            base = args.api_url or f"http://127.0.0.1:{settings.api_port}"
            if args.api_url is None:
                from streamrec.stack.embedded import load_state

                state = load_state(settings)
                base = state.api_url if state and state.api_url else base
            # An admin key when there is one: a backfill is an operator's write, exempt
            # from the per-address and per-id limits meant for shoppers' browsers.
            key = (os.environ.get("STREAMREC_ADMIN_KEYS", "").split(",")[0].strip()
                   or os.environ.get("STREAMREC_TRACKING_KEYS", "").split(",")[0].strip())
            try:
                sent = asyncio.run(post_via_api(base, events, batch=args.batch,
                                                concurrency=args.concurrency, key=key,
                                                progress=bar))
            except StreamrecError as exc:
                print(f"streamrec load: {exc}")
                return 1
    elapsed = time.perf_counter() - started
    print(f"loaded {sent} events from {path} via {args.via} in {elapsed:.1f}s "
          f"({sent / max(elapsed, 1e-9):.0f} events/s)")
    return 0
