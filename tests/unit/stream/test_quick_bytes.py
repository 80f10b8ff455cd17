"""The first freshness level writes the bytes the entry-by-entry rule wrote: stored
entries reused as parsed, only new scores rounded (``recommender.blend_quick.
quick_entries``, ``stream.redis_writer.round_entries`` / ``dumps_rounded``), against
a tuple per entry, every score rounded again and serialised by ``dumps_list``."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pytest

from recommender.blend import DEFAULT_WEIGHTS
from recommender.blend_quick import quick_entries, quick_list
from stream.redis_writer import dumps_list, dumps_rounded, round_entries

REASONS = ["personalized", "similar", "session", "trending", "popular"]


def entry_by_entry(stored: Sequence[Sequence[Any]], neighbours: Sequence[str],
                   exclude: Collection[str], n: int) -> list[tuple[str, float, str]]:
    """The first level's rule as it was written before entries were reused."""
    w = DEFAULT_WEIGHTS
    gains: dict[str, float] = {}
    for item in neighbours:
        if item not in exclude and item not in gains:
            gains[item] = w.similar / (w.rank_offset + len(gains) + 1)
    out: list[tuple[str, float, str]] = []
    listed: set[str] = set()
    for entry in stored:
        item = entry[0]
        if item in exclude or item in listed:
            continue
        listed.add(item)
        score = float(entry[1]) + gains[item] if item in gains else float(entry[1])
        out.append((item, score, entry[2] if len(entry) > 2 else "personalized"))
    out.extend((item, 0.0 + gain, "similar") for item, gain in gains.items()
               if item not in listed)
    out.sort(key=itemgetter(1), reverse=True)
    return out[:n]


def stored_list(rng: random.Random, items: list[str]) -> bytes:
    """A stored list as a worker or a retrain writes it (with or without reasons),
    sometimes with a repeated item or a tie."""
    ids = rng.sample(items, rng.randint(0, 40))
    if ids and rng.random() < 0.2:
        ids.append(ids[0])
    scores = sorted((rng.choice([0.5, rng.random() * rng.choice([1e-3, 1.0, 30.0])])
                     for _ in ids), reverse=True)
    reasons = None if rng.random() < 0.3 else [rng.choice(REASONS) for _ in ids]
    return dumps_list("v1", ids, scores, ts=1.0, reasons=reasons)


@pytest.mark.parametrize("seed", range(4))
def test_the_written_list_is_byte_for_byte_the_entry_by_entry_one(seed: int) -> None:
    rng = random.Random(seed)
    items = [f"sku-{i}" for i in range(60)]
    for _ in range(300):
        raw = stored_list(rng, items)
        stored = orjson.loads(raw)["items"]
        neighbours = rng.sample(items, rng.randint(0, 12))
        exclude = set(rng.sample(items, rng.randint(0, 6)))
        n = rng.randint(1, 45)
        want = entry_by_entry(orjson.loads(raw)["items"], neighbours, exclude, n)
        entries, fresh = quick_entries(stored, neighbours, exclude=exclude, n=n)
        round_entries(fresh)
        assert dumps_rounded("v1", entries, ts=2.0) == dumps_list(
            "v1", [e[0] for e in want], [e[1] for e in want], ts=2.0,
            reasons=[e[2] for e in want])
        assert quick_list(orjson.loads(raw)["items"], neighbours, exclude=exclude,
                          n=n) == want


def test_an_integer_score_is_written_as_the_float_it_reads_as() -> None:
    stored = [["a", 1, "session"], ["b", 0.25, "trending"]]
    entries, fresh = quick_entries(stored, [], exclude=(), n=5)
    round_entries(fresh)
    assert dumps_rounded("v", entries) == dumps_list("v", ["a", "b"], [1.0, 0.25],
                                                     reasons=["session", "trending"])


def test_rounding_an_entry_is_numpys_rounding_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.random(20_000) * 10.0 ** rng.integers(-9, 6, 20_000),
        -rng.random(2_000) * 1e-6, np.arange(-3, 4) * 5e-7, np.arange(0, 40) * 0.5e-6,
        [0.0, -0.0, 1e300, -1e300, np.inf, -np.inf, 2.0 ** 60 + 0.5, 4.5e-7, 5.5e-7]])
    entries = [["x", float(v)] for v in values]
    round_entries(entries)
    want = np.round(values, 6)
    got = np.array([e[1] for e in entries])
    assert got.tobytes() == want.tobytes()
    nan = [["x", float("nan")]]
    round_entries(nan)
    assert np.isnan(nan[0][1])
