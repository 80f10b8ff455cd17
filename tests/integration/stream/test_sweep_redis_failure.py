"""The refresh sweep's entities survive a step Redis failed: the worker tries the step
again (``stream.rebuild.retry_redis``) or the idle timer runs again, and the entities the
failed try had taken from the sweep are re-listed then, not skipped for good (they kept
the retrain's plain list until their next event). Real Redis; a real WRONGTYPE error."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.exceptions import ResponseError

from core.settings import Settings
from stream.history_store import DictStore
from tests.integration.stream.test_processor import ev, small_model, sweeping

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    return either_redis


async def test_sweep_entities_a_failed_step_took_are_relisted_when_it_is_tried_again(
        settings: Any) -> None:
    proc, client, keys, live = await sweeping(settings, per_batch=5)
    store = DictStore()
    await proc.process([(ev(1, "view", "u1", "i0"), 0), (ev(2, "view", "u2", "i1"), 0)],
                       store)
    live["model"] = small_model("v2", seed=2)  # the hot swap
    await client.set(keys.popular, "not a sorted set")  # the step's blend read fails
    step = [(ev(3, "view", "u3", "i3"), 0)]
    with pytest.raises(ResponseError):
        await proc.process(step, store)
    await client.delete(keys.popular)
    result = await proc.process(step, store)  # the same step again, as retry_redis does
    assert result.entities_swept == 2
    for user in ("u1", "u2"):
        assert orjson.loads(await client.get(keys.user_recs(user)))["v"] == "v2"
    await client.aclose()


async def test_what_a_failed_idle_run_took_is_taken_by_the_next_run(settings: Any) -> None:
    proc, client, keys, live = await sweeping(settings, per_batch=5)
    store = DictStore()
    await proc.process([(ev(1, "view", "u1", "i0"), 0), (ev(2, "view", "u2", "i1"), 0)],
                       store)
    live["model"] = small_model("v2", seed=2)
    await client.set(keys.popular, "not a sorted set")
    with pytest.raises(ResponseError):
        await proc.relist_idle(store)
    await client.delete(keys.popular)
    assert (await proc.relist_idle(store)).entities_swept == 2
    for user in ("u1", "u2"):
        assert orjson.loads(await client.get(keys.user_recs(user)))["v"] == "v2"
    await client.aclose()
