"""A trending rebase by another worker while a batch is in flight (real Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import TopicEvent
from stream.history_store import DictStore
from tests.integration.stream.test_processor import make

pytestmark = pytest.mark.integration


def view(eid: str, user: str, item: str, at: float) -> tuple[TopicEvent, int]:
    return TopicEvent(event_id=eid, type="view", user_id=user, item_id=item, ts=at,
                      received_at=at), 0


@pytest.mark.parametrize("split", [False, True])
async def test_a_rebase_between_a_batchs_read_and_write_is_no_jump(
        settings: Any, split: bool) -> None:
    """Worker A reads the landmark for its batch; worker B, busy with events two days
    later, rebases before A's write lands. A's increment, computed against the old
    landmark, went in unscaled: 2^51 times too large, its item on top of trending for
    days. The writer's script now rescales it to the landmark Redis holds (``split``:
    the per-slot path of a Redis Cluster, run here on one Redis)."""
    a, client, keys = await make(settings)
    b, _, _ = await make(settings)
    a.writer._split = b.writer._split = split
    hl = a.config.trending_half_life_s
    t = 1_700_000_000.0
    late = [view("b1", "ub", "later", t + 51 * hl)]
    await a.process([view("a0", "ua", "old", t)], DictStore())
    read_epoch = a._epoch

    async def epoch_then_rebase(batch_max_ts: float, batch_min_ts: float) -> float:
        t0 = await read_epoch(batch_max_ts, batch_min_ts)
        await b.process(late, DictStore())  # moves the landmark meanwhile
        return t0

    a._epoch = epoch_then_rebase  # type: ignore[method-assign]
    await a.process([view("a1", "va", "hot", t + 10)], DictStore())
    scores = dict(await client.zrevrange(keys.trending, 0, -1, withscores=True))
    # One worker applying the same writes in the order Redis saw them.
    c, _, solo_keys = await make(settings, prefix="solo")
    for batch in ([view("a0", "ua", "old", t)], late, [view("a1", "va", "hot", t + 10)]):
        await c.process(batch, DictStore())
    solo = dict(await client.zrevrange(solo_keys.trending, 0, -1, withscores=True))
    assert next(iter(scores)) == b"later", scores  # "hot" was 2^51 times too large
    assert set(scores) == set(solo)
    for item, value in solo.items():
        assert scores[item] == pytest.approx(value, rel=1e-6), (item, scores, solo)
    await client.aclose()
