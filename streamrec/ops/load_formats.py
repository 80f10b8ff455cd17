"""The file formats of ``streamrec load``: each dataset's lines mapped to tracking events.

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

A line that is not an event of its format (too few fields, an unknown behavior, a time
that is not a number, JSON that is not an object...) is left out and told to a
:class:`BadLines` when one is given, with its line number and why; a header on the first
line is not such a line. A UTF-8 byte-order mark and CRLF line ends are read as the
plain text they stand for.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from core.limits import MAX_EVENT_TS

TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}
LASTFM_EPOCH = datetime(2011, 5, 1, tzinfo=UTC).timestamp()
LASTFM_MAX_REPEAT = 10
_BOM = "\ufeff"
#: The API's reading of a client ``timestamp`` (schemas.events: ``datetime`` in JSON mode).
_CLIENT_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)

#: A loaded event: the tracking form plus an epoch-seconds ``ts``.
Event = dict[str, Any]
#: An event and the line it comes from.
Lined = tuple[int, Event]
#: ``bad(line_no, reason)``: a line left out.
Bad = Callable[[int, str], None]


class LoadInputError(ValueError):
    """The file cannot be loaded at all (absent, a directory, empty, unknown format)."""


class BadLines:
    """The lines left out of a load: how many, and the first few with the reason."""

    def __init__(self, keep: int = 5) -> None:
        self.count = 0
        self.examples: list[str] = []
        self._keep = keep

    def __call__(self, line_no: int, reason: str) -> None:
        """Record one line left out."""
        self.count += 1
        if len(self.examples) < self._keep:
            self.examples.append(f"line {line_no}: {reason}")

    def summary(self) -> str:
        """``N lines left out (line 2: ...; line 7: ...)``."""
        more = ", ..." if self.count > len(self.examples) else ""
        return (f"{self.count} line{'s' if self.count != 1 else ''} left out "
                f"({'; '.join(self.examples)}{more})")


def _ignore(_line_no: int, _reason: str) -> None:
    return None


def _text(path: Path) -> Any:
    """The file as text: UTF-8 with or without a byte-order mark; undecodable bytes kept
    as lone surrogates, which the event check then refuses line by line."""
    return open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")


def _is_empty(path: Path) -> bool:
    """True when the file holds nothing but white space (a byte-order mark included):
    whatever its name says, it cannot be loaded at all (reads up to the first other
    character, so a dataset costs one small read)."""
    with _text(path) as fh:
        while chunk := fh.read(65536):
            if chunk.strip():
                return False
    return True


def detect_format(path: Path) -> str:
    """Guess the format from the file name and first line."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if "user_artists" in name:
        return "lastfm"
    if "yoochoose" in name:
        return "yoochoose"
    with _text(path) as fh:
        first = fh.readline().strip()
    if first.startswith("{"):
        return "jsonl"
    if first.count(",") == 4:
        return "taobao"
    what = "its first line is blank" if not first else f"its first line is {first[:60]!r}"
    raise LoadInputError(f"cannot tell the format of {path} ({what}); pass --format "
                         f"({', '.join(READERS)})")


def event_time(value: Any) -> float:
    """Epoch seconds of a file's time field; ValueError unless a finite number after
    1970-01-01 and before the year 10000."""
    ts = float(value)
    if not math.isfinite(ts) or not 0 < ts <= MAX_EVENT_TS:
        raise ValueError(f"time {value!r} is out of range (epoch seconds after 1970, "
                         "before the year 10000)")
    return ts


def _line_time(ts: str, line_no: int, bad: Bad) -> float | None:
    """A CSV/TSV line's epoch time, or None with the line reported to ``bad``."""
    try:
        return event_time(ts)
    except ValueError as exc:
        bad(line_no, str(exc) if "range" in str(exc) else f"time {ts[:40]!r} is not a number")
        return None


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _taobao(path: Path, bad: Bad) -> Iterator[Lined]:
    with _text(path) as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            if len(row) != 5:
                bad(line_no, f"{len(row)} comma-separated fields, not 5")
                continue
            user, item, _category, behavior, ts = row
            if line_no == 1 and not _number(ts):
                continue  # a header
            if behavior not in TAOBAO_TYPES:
                bad(line_no, f"unknown behavior {behavior[:40]!r} "
                             f"(known: {', '.join(TAOBAO_TYPES)})")
                continue
            when = _line_time(ts, line_no, bad)
            if when is None:
                continue
            yield line_no, {"event_id": f"{path.name}:{line_no}",
                            "type": TAOBAO_TYPES[behavior], "user_id": user,
                            "item_id": item, "ts": when}


def lastfm_repeat(plays: int) -> int:
    """Views of one Last.fm line: ``1 + floor(log2(plays))``, at most 10."""
    return min(LASTFM_MAX_REPEAT, 1 + int(math.log2(max(1, plays))))


#: Digits of a play count beyond which it is just "very many" (10 views from 512 on).
_PLAYS_DIGITS = 18


def _plays(text: str) -> int | None:
    """A Last.fm line's play count, or None when it is not a whole number. ``isdigit``
    alone let ``²`` through to ``int``, which refuses it, and ``int`` refuses more than
    4,300 digits: both were a traceback of ``streamrec load``."""
    if not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    try:
        return int(digits[:_PLAYS_DIGITS])  # more digits: as many views (the cap)
    except ValueError:
        return None


def count_lines(path: Path) -> int:
    """Lines in a file (an upper bound of the events of most formats)."""
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def count_events(path: Path, fmt: str) -> int:
    """The progress bar's total: the file's lines, or for Last.fm the views its lines
    become (up to 10 each: a total of lines put the bar at 100 % a tenth of the way)."""
    if (detect_format(path) if fmt == "auto" else fmt) != "lastfm":
        return count_lines(path)
    with _text(path) as fh:
        return sum(lastfm_repeat(plays) for p in map(str.split, fh)
                   if len(p) == 3 and (plays := _plays(p[2])) is not None)


def _lastfm(path: Path, bad: Bad) -> Iterator[Lined]:
    with _text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or (line_no == 1 and len(parts) == 3 and not parts[2].isdigit()):
                continue  # blank, or the header
            plays = _plays(parts[2]) if len(parts) == 3 else None
            if plays is None:
                bad(line_no, "not 'user artist plays' (plays a whole number)")
                continue
            user, artist, _ = parts
            for k in range(lastfm_repeat(plays)):
                yield line_no, {"event_id": f"{path.name}:{line_no}:{k}", "type": "view",
                                "user_id": user, "item_id": artist,
                                "ts": LASTFM_EPOCH + line_no + k / 100}


def _yoochoose(path: Path, bad: Bad) -> Iterator[Lined]:
    with _text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or (line_no == 1 and not parts[0].isdigit()):
                continue  # blank, or the header
            if len(parts) != 3:
                bad(line_no, f"{len(parts)} fields, not 'SessionId ItemId Time'")
                continue
            session, item, ts = parts
            when = _line_time(ts, line_no, bad)
            if when is None:
                continue
            yield line_no, {"event_id": f"{path.name}:{line_no}", "type": "view",
                            "anonymous_id": f"yc-{session}", "item_id": item, "ts": when}


def _client_time(stamp: Any) -> datetime:
    """A JSONL ``timestamp`` read as ``POST /v1/events`` reads it: ISO-8601, or epoch
    seconds as a number or a string of digits (pydantic's rule, which the API applies);
    ValueError for anything else."""
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            pass
    try:
        return _CLIENT_TIME.validate_json(orjson.dumps(stamp))
    except (ValidationError, orjson.JSONEncodeError):
        raise ValueError(f"timestamp {str(stamp)[:40]!r} is neither ISO-8601 nor epoch "
                         "seconds") from None


def _jsonl_event(line: bytes, path: Path, line_no: int) -> Event:
    """One JSONL line as a loaded event; ValueError saying what is wrong with it."""
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"a JSON {type(parsed).__name__}, not an event object")
    event: Event = dict(parsed)
    if event.get("event_id") is None:
        event["event_id"] = f"{path.name}:{line_no}"
    stamp = event.pop("timestamp", None)
    if "ts" in event:
        if isinstance(event["ts"], bool) or not isinstance(event["ts"], int | float):
            raise ValueError("ts is not a number of epoch seconds")
        event["ts"] = event_time(event["ts"])
    elif stamp is None:
        event["ts"] = time.time()
    else:
        when = _client_time(stamp)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # naive = UTC, as the API reads it
        event["ts"] = event_time(when.timestamp())
    return event


def _jsonl(path: Path, bad: Bad) -> Iterator[Lined]:
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no == 1:
                line = line.removeprefix(_BOM.encode())
            if not line.strip():
                continue
            try:
                yield line_no, _jsonl_event(line, path, line_no)
            except ValueError as exc:
                bad(line_no, str(exc))


READERS: dict[str, Callable[[Path, Bad], Iterator[Lined]]] = {
    "taobao": _taobao, "lastfm": _lastfm, "yoochoose": _yoochoose, "jsonl": _jsonl}


def read_file(path: Path, fmt: str = "auto", bad: Bad | None = None) -> Iterator[Lined]:
    """``(line, event)`` of the file in file order, mapped to streamrec types; lines that
    are not events of the format go to ``bad`` (ignored without one)."""
    if path.is_dir():
        raise LoadInputError(f"{path} is a directory, not a file")
    if not path.exists():
        raise LoadInputError(f"no such file: {path}")
    if _is_empty(path):
        raise LoadInputError(f"{path} is empty: there is nothing to load")
    reader = READERS[detect_format(path) if fmt == "auto" else fmt]
    return reader(path, bad or _ignore)
