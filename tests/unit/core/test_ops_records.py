"""The operational records the worker writes and status reads (core/ops_records.py): one
shape on both sides, tolerant reading."""

from __future__ import annotations

import orjson
import pytest

from core.ops_records import (
    FRESHNESS_BUCKETS_MS,
    REASON_MAX_CHARS,
    dead_letter_entry,
    histogram_fields,
    model_history_entry,
    parse_entries,
    parse_histogram,
    parse_replay_ends,
    replay_ends_fields,
    replayed,
)
from stream.metrics import RollingQuantiles


def test_histogram_round_trips_through_the_hash_fields() -> None:
    counts = list(range(len(FRESHNESS_BUCKETS_MS) + 1))
    fields = histogram_fields(counts)
    assert fields["10"] == 0 and fields["inf"] == len(FRESHNESS_BUCKETS_MS)
    # Redis answers strings (or bytes): parsed back in bucket order, inf last as None.
    parsed = parse_histogram({k.encode(): str(v).encode() for k, v in fields.items()})
    assert [b["le_ms"] for b in parsed] == [*FRESHNESS_BUCKETS_MS, None]
    assert [b["count"] for b in parsed] == counts
    assert parse_histogram({}) == []
    with pytest.raises(ValueError):
        histogram_fields([1, 2])


def test_rolling_samples_fall_in_the_bucket_of_their_upper_bound() -> None:
    rolling = RollingQuantiles()
    assert rolling.histogram_ms() == {}
    rolling.add_many([0.001, 0.010, 0.0101, 0.2, 45.0, 200.0])  # seconds
    hist = rolling.histogram_ms()
    assert hist["10"] == 2  # 1 ms and exactly 10 ms
    assert hist["25"] == 1 and hist["200"] == 1 and hist["60000"] == 1 and hist["inf"] == 1
    assert sum(hist.values()) == 6


def test_dead_letter_entries_keep_the_reason_short_and_never_the_message() -> None:
    entry = orjson.loads(dead_letter_entry(reason="x" * 5000, topic="events", partition=2,
                                           offset=7, at=1.23456))
    assert len(entry["reason"]) == REASON_MAX_CHARS
    assert entry == {"reason": entry["reason"], "topic": "events", "partition": 2,
                     "offset": 7, "at": 1.235}


def test_history_entries_keep_numbers_and_unreadable_entries_are_skipped() -> None:
    raw = model_history_entry("v1", {"n_users": 3, "seconds": 1.5, "note": "x", "ok": True})
    assert orjson.loads(raw) == {"version": "v1", "n_users": 3, "seconds": 1.5}
    assert parse_entries([raw, b"not json", b"[1]", None]) == [orjson.loads(raw)]


def test_events_below_the_replay_ends_are_replayed() -> None:
    ends = parse_replay_ends({b"0": b"120", b"2": b"0", "x": "1", b"1": b"later"})
    assert ends == {0: 120, 2: 0}
    assert replayed(ends, 0, 0) and replayed(ends, 0, 119)
    # from the end at the reset on: new traffic, a backlog after an outage included
    assert not replayed(ends, 0, 120) and not replayed(ends, 0, 10_000)
    assert not replayed(ends, 2, 0)  # the partition was empty then
    assert not replayed(ends, 1, 5)  # no end recorded: never replayed
    assert not replayed({}, 0, 0)  # no replay yet
    assert parse_replay_ends(replay_ends_fields({0: 120, 2: 0})) == {0: 120, 2: 0}
