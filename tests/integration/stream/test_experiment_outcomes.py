"""Experiment outcomes through the event processor against a real Redis: exposures enrol,
later events of exposed entities count once per event id, in their variant; earlier
events, other entities, stopped and re-created experiments do not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from api.experiment_store import parse_counts
from core.redis_keys import RedisKeys
from schemas import ExposureInfo, TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from tests.redis_state import snapshot

pytestmark = pytest.mark.integration
T0 = 1_700_000_000.0
K = RedisKeys()


def ev(i: int, etype: str, user: str | None, item: str | None = "sku", *,
       at: float | None = None, **kw: Any) -> TopicEvent:
    ts = T0 + i if at is None else at
    return TopicEvent(event_id=f"e{i}", type=etype, user_id=user, item_id=item, ts=ts,
                      received_at=ts, **kw)


def exposure(i: int, entity: str, variant: str, *, unit: str | None = None,
             run: str = "r1", experiment: str = "x1") -> TopicEvent:
    return TopicEvent(event_id=f"x{i}", type="exposure", user_id=entity, ts=T0 + i,
                      received_at=T0 + i,
                      experiment=ExposureInfo(id=experiment, run=run, variant=variant,
                                              unit=unit or entity))


async def define(client: aioredis.Redis, experiment: str = "x1", run: str = "r1",
                 stopped_at: float | None = None) -> None:
    doc = {"experiment_id": experiment, "run": run, "status": "running",
           "variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                        {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
           "contexts": None, "created_at": T0, "started_at": T0, "stopped_at": stopped_at}
    await client.hset(K.experiments, experiment, orjson.dumps(doc))


async def counts(client: aioredis.Redis, experiment: str = "x1") -> dict[str, dict[str, float]]:
    return parse_counts(await client.hgetall(K.experiment_counts(experiment)))


@pytest.fixture
async def proc(settings: Any) -> Any:
    client = aioredis.Redis.from_url(settings.redis_url)
    processor = EventProcessor(RedisWriter(client, K, dedupe_ttl_s=3600), K,
                               ProcessorConfig(), lambda: None)
    yield processor, client
    await client.aclose()


async def test_outcomes_count_after_exposure_once_per_event(proc: Any, settings: Any) -> None:
    processor, client = proc
    await define(client)
    store = DictStore()
    batch = [
        (ev(1, "purchase", "u1", price=5.0), 0),            # before u1's exposure: no
        (exposure(2, "u1", "treatment"), 0),
        (ev(3, "impression", "u1", None, item_ids=["a", "b"]), 0),
        (ev(4, "click", "u1", "a"), 0),
        (ev(5, "add_to_cart", "u1", "a", price=9.99, quantity=2), 0),
        (ev(6, "purchase", "u1", "a", price=9.99, quantity=2), 0),
        (ev(7, "view", "u1", "a"), 0),                       # views are not outcomes
        (exposure(8, "u2", "control"), 1),
        (exposure(9, "u2", "control"), 1),                   # a duplicate exposure
        (ev(10, "purchase", "u2", "b", price=0.1), 1),
        (ev(11, "purchase", "u2", "c", price=0.2), 1),
        (ev(12, "purchase", "u3", "c", price=100.0), 1),     # never exposed
    ]
    await processor.process(batch, store)
    got = await counts(client)
    assert got["treatment"] == {"entities": 1, "impression": 1, "click": 1, "add_to_cart": 1,
                                "purchase": 1, "purchasers": 1, "revenue": 19_980_000,
                                "revenue_sq": pytest.approx(19.98 ** 2)}
    assert got["control"] == {"entities": 1, "purchase": 2, "purchasers": 1,
                              "revenue": 300_000, "revenue_sq": pytest.approx(0.3 ** 2)}
    once = snapshot(settings.redis_url)
    # A redelivered batch (worker killed before its commit) changes nothing.
    await processor.process(batch, store)
    assert snapshot(settings.redis_url) == once
    # Exposure records are not tracking events: no history, no item counts.
    assert store.get("u2") is not None  # from its purchases
    assert await client.hget(K.item_stats("sku"), "exposure") is None


async def test_identified_user_counts_as_the_anonymous_unit(proc: Any) -> None:
    processor, client = proc
    await define(client)
    store = DictStore()
    await processor.process([
        (exposure(1, "anon-1", "treatment"), 0),
        (ev(2, "add_to_cart", None, "a", anonymous_id="anon-1"), 0),
    ], store)
    ident = TopicEvent(event_id="i1", type="identify", anonymous_id="anon-1", user_id="u9",
                       ts=T0 + 3, received_at=T0 + 3)
    result = await processor.process([(ident, 0)], store)
    forwarded = [(e, 1) for e in result.forwards["u9"]]
    # the API's link: u9 inherits anon-1's variant, unit anon-1
    await processor.process([(exposure(4, "u9", "treatment", unit="anon-1"), 1),
                             *forwarded,
                             (ev(5, "purchase", "u9", "a", price=3.0), 1)], store)
    got = (await counts(client))["treatment"]
    # one entity; the cart add once (the forwarded copy dedupes); one purchaser
    assert got["entities"] == 1 and got["add_to_cart"] == 1
    assert got["purchase"] == 1 and got["purchasers"] == 1 and got["revenue"] == 3_000_000


async def test_stopped_deleted_and_recreated_experiments_count_nothing_new(proc: Any) -> None:
    processor, client = proc
    store = DictStore()
    await define(client, stopped_at=T0 + 5)
    await processor.process([(exposure(1, "u1", "control"), 0),
                             (ev(2, "click", "u1", "a"), 0),
                             (ev(6, "click", "u1", "b"), 0),      # after the stop
                             (exposure(7, "u2", "control"), 0)], store)
    assert await counts(client) == {"control": {"entities": 1, "click": 1}}
    # Re-created under the same id (a new run): the old run's records count nothing.
    await client.delete(K.experiment_counts("x1"), K.experiment_entities("x1"),
                        K.experiment_units("x1"))
    await define(client, run="r2")
    await processor.process([(exposure(8, "u3", "control", run="r1"), 0),
                             (ev(9, "click", "u3", "a"), 0)], store)
    assert await counts(client) == {}
    # Gone entirely: nothing is written under its keys.
    await client.hdel(K.experiments, "x1")
    await processor.process([(exposure(10, "u4", "control", run="r2"), 0)], store)
    assert not await client.exists(K.experiment_entities("x1"))


async def test_huge_revenue_is_capped_not_fatal(proc: Any) -> None:
    processor, client = proc
    await define(client)
    store = DictStore()
    batch: list[tuple[TopicEvent, int]] = [(exposure(1, "rich", "treatment"), 0)]
    batch += [(ev(i, "purchase", "rich", "a", price=1e12, quantity=1_000_000), 0)
              for i in range(2, 40)]
    await processor.process(batch, store)
    got = (await counts(client))["treatment"]
    assert got["purchase"] == 38 and got["purchasers"] == 1
    assert 0 < got["revenue"] < 2 ** 63


async def test_a_retry_stamped_in_the_next_hour_is_one_outcome(proc: Any) -> None:
    # A purchase sent without a timestamp and retried after the top of the hour carries
    # a later receive time: the experiment's seen set of the hour before is consulted.
    processor, client = proc
    await define(client)
    end = (T0 // 3600 + 1) * 3600
    buy = ev(5, "purchase", "u1", "a", at=end - 1, price=2.0)
    await processor.process([(exposure(1, "u1", "treatment"), 0), (buy, 0)], DictStore())
    retry = buy.model_copy(update={"ts": end + 20, "received_at": end + 20})
    await processor.process([(retry, 0)], DictStore())
    assert (await counts(client))["treatment"]["purchase"] == 1


async def test_a_replayed_forget_keeps_the_enrolment_of_the_return(proc: Any) -> None:
    # u1 is enrolled, forgotten, comes back and is enrolled again: two entities (the
    # variant totals keep the first). A rebuild replays the whole log over this Redis:
    # the forget must not erase the return's enrolment, or the return's exposure, read
    # again, enrols u1 a third time (`streamrec rebuild` added one entity per returned
    # id, every run).
    processor, client = proc
    await define(client)
    store = DictStore()
    forget = TopicEvent(event_id="f1", type="forget", user_id="u1", ts=T0 + 3,
                        received_at=T0 + 3)
    log = [(exposure(1, "u1", "treatment"), 0), (ev(2, "purchase", "u1", price=2.0), 0),
           (forget, 0), (exposure(4, "u1", "treatment"), 0),
           (ev(5, "purchase", "u1", price=3.0), 0)]
    await processor.process(log[:2], store)  # live: the forget came later
    await processor.process(log[2:], store)
    once = await counts(client)
    assert once["treatment"]["entities"] == 2 and once["treatment"]["purchasers"] == 2
    assert await client.hexists(K.experiment_entities("x1"), "u1")
    for replay in ([log], [log[:2], log[2:]], [log]):
        for batch in replay:
            await processor.process(batch, store)
        assert await counts(client) == once
        assert await client.hexists(K.experiment_entities("x1"), "u1")
