"""Evaluation datasets as topic-shaped events, with the protocol each one is scored by.

The public datasets are read from ``../shared/data`` (never copied into the repository);
any JSON-lines events file, or the live ``events`` topic, can be evaluated the same way.
Each loader returns events shaped like the ``events`` topic (``event_id, type, user_id,
item_id, ts``) and a :class:`Plan`: which protocol, and where the validation and test
periods lie. Validation periods always end before the test period starts, so
hyper-parameters chosen on them never saw a test case.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from core.limits import MAX_EVENT_TS, id_problem
from schemas.events import MAX_QUANTITY, TopicEventType

#: Where the shared datasets live, relative to the project root.
DEFAULT_DATA_DIR = Path("../shared/data")

#: Taobao behaviour → our event types. The public API has no "favourite" type; a
#: favourite is an intent-to-buy signal like a cart add, so it counts as one.
TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}

#: Mean event rate of the Taobao window (110,300 events in 7,811 s): the synthetic clock
#: of untimed data, so the worker's batching and retrain timer see a real shop's pace.
SHOP_EVENTS_PER_SECOND = 14.0

Protocol = Literal["prequential", "session", "holdout"]

#: Event types an events file may hold: the topic's (the API's plus ``identify``, which
#: links an anonymous id to a user, and the internal ones, which are not interactions).
FILE_EVENT_TYPES: tuple[str, ...] = get_args(TopicEventType)

#: Id fields of an event, each checked by the API's one id rule (``core.limits.id_problem``).
ID_FIELDS = ("event_id", "user_id", "anonymous_id", "item_id")



@dataclass(frozen=True)
class Period:
    """A prequential evaluation period: checkpoints and their test windows."""

    start_ts: float
    end_ts: float
    checkpoints: int
    window_s: float


@dataclass(frozen=True)
class Plan:
    """How a dataset is evaluated.

    Attributes
    ----------
    protocol
        ``prequential`` (timed users), ``session`` (next click; prequential with the
        session as entity) or ``holdout`` (untimed: seeded leave-``holdout``-out per user).
    validation, test
        Periods of the prequential protocols (``None`` for holdout).
    holdout
        Share of each user's items held out (holdout protocol).
    user_fraction
        Seeded share of entities evaluated (all entities are always learned).
    """

    protocol: Protocol
    validation: Period | None = None
    test: Period | None = None
    holdout: float = 0.2
    user_fraction: float = 1.0


@dataclass
class Dataset:
    """Events plus how to evaluate them."""

    name: str
    events: list[dict[str, Any]]
    plan: Plan
    source: str
    notes: list[str] = field(default_factory=list)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not where they should be."""


def _need(path: Path) -> Path:
    if not path.exists():
        raise DatasetMissing(f"{path} not found (see ../shared/data/README.md)")
    return path


def fractions_plan(lo: float, hi: float, *, protocol: Protocol = "prequential",
                   checkpoints: int = 12, window_s: float | None = None,
                   validation: tuple[float, float] = (0.2, 0.6),
                   test: tuple[float, float] = (0.6, 1.0)) -> Plan:
    """A prequential plan on fractions of a time span ``[lo, hi]``.

    The default puts the first 20 % in the backlog, validates on 20–60 % and tests on the
    last 40 %; ``window_s=None`` makes each window as long as the checkpoint spacing, so
    every event of the period is a test case.
    """
    span = hi - lo

    def period(a: float, b: float) -> Period:
        start, end = lo + a * span, lo + b * span + (1.0 if b >= 1.0 else 0.0)
        window = window_s if window_s is not None else (end - start) / checkpoints
        return Period(start, end, checkpoints, window)

    return Plan(protocol, validation=period(*validation), test=period(*test))


# ---------------------------------------------------------------------------- loaders
def taobao(data_dir: Path = DEFAULT_DATA_DIR) -> Dataset:
    """Taobao UserBehavior, 2 h 10 min window (Alibaba Tianchi; research use).

    Protocol: prequential in time order. Backlog 0–20 % of the window, validation
    checkpoints in 20–60 %, test checkpoints in 60–100 %; 12 checkpoints per period
    (every ~260 s), each window running to the next checkpoint, so every event of the
    period is a test case.
    """
    path = _need(data_dir / "taobao-userbehavior-window" /
                 "UserBehavior_2017-11-26_0900-1110CST.csv")
    events: list[dict[str, Any]] = []
    with path.open() as fh:
        for n, line in enumerate(fh):
            parts = line.strip().split(",")
            if len(parts) != 5:
                continue
            user, item, _category, behavior, ts = parts
            kind = TAOBAO_TYPES.get(behavior)
            if kind is None:
                continue
            events.append({"event_id": f"tb{n}", "type": kind, "user_id": user,
                           "item_id": item, "ts": float(ts)})
    tss = [float(e["ts"]) for e in events]
    return Dataset(
        "taobao", events, fractions_plan(min(tss), max(tss)),
        "Alibaba Tianchi, User Behavior Data from Taobao (2017-11-26 01:00-03:10 UTC window)",
        ["fav counted as add_to_cart (the API has no favourite type)"],
    )


def lastfm(data_dir: Path = DEFAULT_DATA_DIR) -> Dataset:
    """HetRec 2011 Last.fm 2K (GroupLens): user-artist play counts, no timestamps.

    Each (user, artist) pair becomes one ``view`` event: the production model only knows
    events, and a play count has no event type. Protocol: seeded leave-20 %-out per user
    (users with at least 5 artists); validation holds out a further 20 % of the training
    side.
    """
    path = _need(data_dir / "lastfm-hetrec2011-2k" / "user_artists.dat")
    events = []
    with path.open() as fh:
        for n, line in enumerate(fh):
            parts = line.strip().split("\t")
            if len(parts) != 3 or not parts[0].strip().isdigit():
                continue
            user, artist = parts[0].strip(), parts[1].strip()
            events.append({"event_id": f"lf{n}", "type": "view", "user_id": user,
                           "item_id": artist, "ts": None})
    return Dataset("lastfm", events, Plan("holdout", holdout=0.2),
                   "HetRec 2011 Last.fm 2K (GroupLens), user_artists.dat",
                   ["one view per (user, artist); play counts unused"])


def _yoochoose_rows(path: Path, prefix: str) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        next(fh, None)
        for n, line in enumerate(fh):
            parts = line.split()
            if len(parts) != 3:
                continue
            session, item, ts = parts
            yield {"event_id": f"{prefix}{n}", "type": "click", "user_id": f"s{session}",
                   "item_id": item, "ts": float(ts)}


def yoochoose(data_dir: Path = DEFAULT_DATA_DIR) -> Dataset:
    """RecSys Challenge 2015 (YOOCHOOSE) clicks, 100k sample (session-rec's rsc15 split).

    Protocol: next click. Sessions are the entities; the prepared training file (6 days)
    is the history and the test file (the following day) the test period. Validation is
    the last day of the training file, replayed with everything before it as history.
    Each period has 72 checkpoints (every 20 min), each followed by a 300 s window.
    """
    folder = data_dir / "yoochoose-rsc15-100k"
    train = list(_yoochoose_rows(_need(folder / "yoochoose-clicks-100k_train_full.txt"), "yt"))
    test = list(_yoochoose_rows(_need(folder / "yoochoose-clicks-100k_test.txt"), "ys"))
    # Session ids of the two files are separate numberings: keep them apart.
    for ev in test:
        ev["user_id"] = "t" + ev["user_id"]
    train_end = max(e["ts"] for e in train)
    lo, hi = min(e["ts"] for e in test), max(e["ts"] for e in test)
    plan = Plan(
        "session",
        validation=Period(train_end - 86400.0, train_end + 1.0, 72, 300.0),
        test=Period(lo, hi + 1.0, 72, 300.0),
    )
    return Dataset("yoochoose", train + test, plan,
                   "RecSys Challenge 2015 YOOCHOOSE clicks (rn5l/session-rec rsc15 100k)",
                   ["entity = session; train/test files as prepared by session-rec"])


def events_file(path: Path, *, name: str | None = None) -> Dataset:
    """Any JSON-lines (or JSON array) file of events in the API / topic shape.

    Required fields: ``type`` and ``user_id`` or ``anonymous_id``; ``item_id`` (events
    without one are not interactions); optional ``event_id`` (generated when missing),
    ``ts`` (epoch seconds) or, as ``POST /v1/events`` takes it, ``timestamp``
    (ISO-8601), and ``quantity``. A line may also be an API batch ``{"events": [...]}``.
    With timestamps the prequential protocol applies (as for Taobao); without, the
    holdout one. A line that is not such an event (not a JSON object, an unknown type,
    an id or a ``quantity`` the API would refuse, a time before 1970), a file that is not
    UTF-8 text, or a file without any event, is a ``ValueError`` naming the file (and the
    line); a missing file is :class:`DatasetMissing`.
    """
    if not path.exists():
        raise DatasetMissing(f"{path}: no such events file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    rows: Iterable[tuple[str, Any]]
    if text.lstrip().startswith("["):
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON array of events ({exc})") from None
        rows = ((f"element {n}", row) for n, row in enumerate(array, 1))
    else:
        rows = ((f"line {n}", _json_line(path, n, line))
                for n, line in enumerate(text.splitlines(), 1) if line.strip())
    events = []
    for n, (where, row) in enumerate(rows):
        if isinstance(row, dict) and isinstance(row.get("events"), list):
            items = row["events"]  # an EventEnvelope / API batch
        else:
            items = [row]
        for j, ev in enumerate(items):
            ev = _file_event(path, where, ev)
            ev.setdefault("event_id", f"f{n}-{j}")
            events.append(ev)
    if not events:
        raise ValueError(f"{path}: no events in the file")
    return _generic(name or path.stem, events, f"events file {path}")


def _json_line(path: Path, n: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from None


def _file_event(path: Path, where: str, ev: Any) -> dict[str, Any]:
    """One event of an events file, checked, with ``ts`` from ``timestamp`` if need be."""
    if not isinstance(ev, dict):
        raise ValueError(f"{path} {where}: an event must be a JSON object, not {ev!r:.60}")
    if not isinstance(ev.get("type"), str) or not (ev.get("user_id") or ev.get("anonymous_id")):
        raise ValueError(f"{path} {where}: an event needs 'type' and 'user_id' or "
                         "'anonymous_id'")
    if ev["type"] not in FILE_EVENT_TYPES:
        raise ValueError(f"{path} {where}: unknown event type {ev['type']!r:.60}; known: "
                         f"{', '.join(FILE_EVENT_TYPES)}")
    for key in ID_FIELDS:
        value = ev.get(key)
        if value is not None:
            problem = id_problem(value) if isinstance(value, str) else "an id must be a string"
            if problem:
                raise ValueError(f"{path} {where}: '{key}': {problem}")
    quantity = ev.get("quantity")
    if quantity is not None and (type(quantity) is not int
                                 or not 1 <= quantity <= MAX_QUANTITY):
        raise ValueError(f"{path} {where}: 'quantity' {quantity!r:.60} is not a whole "
                         f"number from 1 to {MAX_QUANTITY:,}")
    ev = dict(ev)
    if ev.get("ts") in (None, "") and ev.get("timestamp") not in (None, ""):
        try:
            stamp = datetime.fromisoformat(str(ev["timestamp"]))
        except ValueError:
            raise ValueError(f"{path} {where}: 'timestamp' {ev['timestamp']!r:.60} is not "
                             "ISO-8601") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)  # as the API reads a naive timestamp
        ev["ts"] = stamp.timestamp()
    if ev.get("ts") not in (None, ""):
        try:
            if isinstance(ev["ts"], bool):
                raise ValueError
            ev["ts"] = float(ev["ts"])
            if not (math.isfinite(ev["ts"]) and 0 < ev["ts"] <= MAX_EVENT_TS):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{path} {where}: 'ts' {ev['ts']!r:.60} is not epoch seconds "
                             "after 1970 and before the year 10000") from None
    return ev


def topic_events(settings: Any, *, name: str = "topic") -> Dataset:
    """Every event on the ``events`` topic (read like the retrain reads it); a topic with
    no event on it is a ``ValueError`` that says so (there is nothing to evaluate)."""
    from recommender.interactions import row_event
    from stream.retrain_read import iter_topic_events

    events = [row_event(row) for row in iter_topic_events(settings)]
    if not events:
        raise ValueError(f"topic {settings.topic_events}: no events on the topic, nothing "
                         "to evaluate (post some with POST /v1/events or `streamrec load`)")
    return _generic(name, events, f"topic {settings.topic_events}")


def _generic(name: str, events: list[dict[str, Any]], source: str) -> Dataset:
    tss = [float(e["ts"]) for e in events if e.get("ts") not in (None, "")]
    if events and len(tss) == len(events) and max(tss) > min(tss):
        return Dataset(name, events, fractions_plan(min(tss), max(tss)), source)
    for e in events:
        e["ts"] = None
    return Dataset(name, events, Plan("holdout", holdout=0.2), source)


LOADERS = {"taobao": taobao, "lastfm": lastfm, "yoochoose": yoochoose}


def load(name: str, data_dir: Path = DEFAULT_DATA_DIR) -> Dataset:
    """Load a shared dataset by name (``taobao``, ``lastfm``, ``yoochoose``)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}") from None
    return loader(data_dir)

