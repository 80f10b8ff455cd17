"""The newcomer budget gives the same state whatever order the partitions interleave in.

The ``events`` topic is keyed by entity, so one item's events come from every partition,
and the order in which the partitions' events reach Redis changes from run to run (a
replay, one worker or several, other batch boundaries). Each partition's log order is
what stays. Here the same two partition logs, full of fresh ids drawing on a tight
newcomer budget (``recommender.abuse`` rule 5), go through the real
:class:`~stream.processor.EventProcessor` on a real Redis (and Redis Cluster, where the
budget is charged in the shared slot and its share carried to the items' slots by the
outbox) in two interleavings with different batch boundaries; the counted state —
co-occurrence, popular, trending, per-item counts and users, the budget shares — must
come out the same. Scores are compared to 9 significant digits: float sums in another
order may differ in their last bits, which is not what is checked.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from core.redis_client import async_client, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from tests.redis_state import snapshot

pytestmark = pytest.mark.integration

K = RedisKeys()
NOW = 1_750_000_000.0 - 1_750_000_000.0 % 3600  # the start of an abuse window
ITEMS = ["hot", "warm", "a", "b", "c"]
Log = list[tuple[TopicEvent, int]]


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """Two ``events`` partitions, a budget fresh ids exhaust within a few events."""
    return either_redis.model_copy(update={
        "topic_partitions": 2, "abuse_newcomer_budget": 1.0, "abuse_min_trust": 0.25,
        "abuse_trust_ramp_s": 3600.0, "abuse_window_s": 3600.0})


def partition_logs(seed: int = 7) -> tuple[Log, Log]:
    """Each partition's log in offset order: fresh anonymous ids (all newcomers) viewing,
    clicking and carting a few items, mostly ``hot``, their events interleaved (a batch
    holding several events of one id groups them); an id's events on one partition."""
    rng = random.Random(seed)
    drafts: tuple[list[tuple[float, str, str, str]], ...] = ([], [])
    for n in range(60):
        for _ in range(rng.randint(1, 4)):
            item = "hot" if rng.random() < 0.6 else rng.choice(ITEMS)
            etype = rng.choice(["view", "view", "click", "add_to_cart"])
            drafts[n % 2].append((NOW + rng.uniform(0, 1200), f"fresh{n}", item, etype))
    logs = [[(TopicEvent(event_id=f"e{p}-{o}", type=etype, anonymous_id=who,
                         item_id=item, ts=at, received_at=at), p)
             for o, (at, who, item, etype) in enumerate(sorted(drafts[p]))] for p in (0, 1)]
    return logs[0], logs[1]


def interleave(logs: tuple[Log, Log], rng: random.Random | None) -> Log:
    """One of the orders the worker may see: the partitions one after the other (no
    ``rng``), or merged at random, each partition's log order kept."""
    if rng is None:
        return [*logs[1], *logs[0]]
    heads, out = [0, 0], []
    while heads[0] < len(logs[0]) or heads[1] < len(logs[1]):
        p = rng.choice([q for q in (0, 1) if heads[q] < len(logs[q])])
        out.append(logs[p][heads[p]])
        heads[p] += 1
    return out


async def apply(settings: Settings, order: Log, batch: int) -> None:
    """``order`` through the worker's processor in batches of ``batch`` events."""
    client = async_client(settings)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600)
    await client.set(K.trending_epoch, repr(NOW))  # the live worker's landmark
    proc = EventProcessor(writer, K, ProcessorConfig.from_settings(settings, replay=True),
                          lambda: None)
    store = DictStore()
    for start in range(0, len(order), batch):
        await proc.process(order[start:start + batch], store)
    await client.aclose()


def counted_state(settings: Settings) -> dict[bytes, Any]:
    """Popular, trending, co-occurrence, per-item counts and users, budget shares."""
    kept = {K.popular, K.trending}
    kept |= {make(i) for i in ITEMS for make in (K.item_cooc, K.item_stats, K.item_users)}

    def rounded(value: Any) -> Any:
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, tuple):
            return tuple(rounded(v) for v in value)
        if isinstance(value, float):
            return float(f"{value:.9g}")
        try:
            return float(f"{float(value):.9g}")
        except (TypeError, ValueError):
            return value

    state = snapshot(settings)
    return {k: rounded(v) for k, v in state.items()
            if k.decode() in kept or b":newcomers:" in k}


def wipe(settings: Settings) -> None:
    client = sync_client(settings)
    client.flushdb()
    client.close()


async def test_two_interleavings_of_the_partitions_give_the_same_counted_state(
        settings: Settings) -> None:
    logs = partition_logs()
    await apply(settings, interleave(logs, None), batch=500)  # partition 1 first, one batch
    first = counted_state(settings)
    wipe(settings)
    # partitions merged at random, in batches of 7: an entity's events split differently
    await apply(settings, interleave(logs, random.Random(3)), batch=7)
    second = counted_state(settings)
    assert first[K.popular.encode()], "nothing was counted"
    assert first == second
    window = int(NOW // 3600)
    shares = [first[K.item_newcomers("hot", window, p).encode()] for p in (0, 1)]
    # Both partitions' shares of hot's budget are used up, half of it each.
    assert [float(s) for s in shares] == [pytest.approx(0.5), pytest.approx(0.5)]
    # Each budget got its lifetime when it was created (batches of 7: many calls drew
    # on it after that, and set none).
    client = sync_client(settings)
    try:
        budgets = list(client.scan_iter(match=K.pattern("item_newcomers", "*", "*")))
        assert budgets and all(client.ttl(k) > 0 for k in budgets), budgets
    finally:
        client.close()
