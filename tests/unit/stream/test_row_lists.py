"""The worker's binary neighbour lists decode to exactly what their JSON form parses to,
and blend to the same lists."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.scored_lists import parse_scored_json
from recommender.blend_many import ItemCodes, RowList, blend_many
from recommender.idmap import IdMap
from stream.redis_writer import dumps_list, dumps_list_block
from stream.row_lists import decode_row_ids, decode_rows, encode_row_block, encode_rows


def test_scores_bit_identical_to_the_json_form() -> None:
    rng = np.random.default_rng(3)
    ids = [f"i{j}" for j in range(500)]
    for _ in range(50):
        rows = rng.choice(500, size=100, replace=False)
        scores = np.sort(rng.uniform(-1, 1, 100).astype(np.float32))[::-1]
        raw = encode_rows(rows, scores)
        assert len(raw) == 8 * 100
        got = decode_rows(raw, 100)
        want = parse_scored_json(dumps_list("v1", [ids[r] for r in rows], scores))
        assert [ids[r] for r in got.rows.tolist()] == [i for i, _ in want]
        assert got.scores.tolist() == [s for _, s in want]  # bit for bit
        head = decode_rows(raw, 30)
        assert head.rows.tolist() == got.rows[:30].tolist()
        assert head.scores.tolist() == got.scores[:30].tolist()
    assert len(decode_rows(encode_rows(np.zeros(0, int), np.zeros(0)), 10)) == 0


def test_blend_same_with_row_lists() -> None:
    rng = random.Random(5)
    item_map = IdMap([f"i{j}" for j in range(80)])
    per_item = {}
    for j in range(80):
        rows = rng.sample(range(80), rng.randint(0, 12))
        scores = np.array([rng.choice([0.5, rng.random()]) for _ in rows])
        per_item[f"i{j}"] = (RowList(np.array(rows, dtype=np.int64), scores),
                             [(f"i{r}", float(s)) for r, s in zip(rows, scores, strict=True)])
    recents = [[f"i{j}" for j in rng.sample(range(80), rng.randint(0, 5))] for _ in range(30)]
    kwargs = dict(n=20, personal=[[] for _ in recents],
                  session=[[] for _ in recents], trending=[("i1", 2.0)], popular=[("i2", 1.0)],
                  known=[set(r) for r in recents], history_size=[len(r) for r in recents])
    as_rows = blend_many(similar=[[per_item[i][0] for i in r] for r in recents],
                         codes=ItemCodes(item_map), **kwargs)  # type: ignore[arg-type]
    as_pairs = blend_many(similar=[[per_item[i][1] for i in r] for r in recents],
                          codes=ItemCodes(item_map), **kwargs)  # type: ignore[arg-type]
    assert [(b.ids, b.scores.tolist(), b.sources) for b in as_rows] == \
        [(b.ids, b.scores.tolist(), b.sources) for b in as_pairs]
    assert any(b.ids for b in as_rows)


def test_a_block_of_lists_is_stored_as_each_list_alone() -> None:
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 5000, (6, 10))
    scores = rng.random((6, 10)).astype(np.float32)
    ids = [[f"i{r}" for r in row] for row in rows.tolist()]
    assert encode_row_block(rows, scores) == [encode_rows(r, s)
                                              for r, s in zip(rows, scores, strict=True)]
    assert dumps_list_block("v1", ids, scores, ts=12.3456) == [
        dumps_list("v1", i, s, ts=12.3456) for i, s in zip(ids, scores, strict=True)]


@pytest.mark.parametrize("depth", [0, 1, 3, 5, 50, -1])
def test_row_ids_are_the_decoded_rows_without_scores(depth: int) -> None:
    raw = encode_rows(np.array([7, 0, 19_999, 3, 12]), np.array([0.9, 0.5, 0.4, 0.2, 0.1]))
    assert decode_row_ids(raw, depth) == decode_rows(raw, depth).rows.tolist()
    assert decode_row_ids(b"", depth) == []
