"""The per-item keys of an event's effects come from ``RedisKeys``' builders (their item
bucket tags), whatever the prefix and the id, cached or not."""

from __future__ import annotations

from core.redis_keys import RedisKeys, tag_of
from recommender.abuse import AbusePolicy
from recommender.batch_step import Increments
from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.item_ops import event_ops
from stream.slot_apply import op_key


def test_item_keys_are_the_builders_keys_under_any_prefix() -> None:
    for keys in (RedisKeys(), RedisKeys("shop2:")):
        for item, partner in (("sku-1", "sku-2"), ("{x}", "a:b:stats"), ("日本", "sku-1")):
            event = TopicEvent(event_id="e1", type="view", user_id="u1", item_id=item,
                               ts=1_700_000_000.0)
            counted = Increments(item=item, popular=1.0, trending=2.0,
                                 cooc=[(item, partner, 1.0), (partner, item, 1.0)])
            for _ in range(2):  # the second time from the cache
                ops = event_ops(event, entity="u1", counted=counted, keys=keys)
                written = {op_key(op) for op in ops.guarded}
                assert {keys.item_stats(item), keys.item_users(item), keys.item_cooc(item),
                        keys.item_cooc(partner), keys.popular, keys.trending} <= written
                # the estimate counts on once the exact set is full: an option of its add
                users = next(op for op in ops.guarded if op_key(op) == keys.item_users(item))
                assert users[0]["h"] == keys.item_users_hll(item)
                assert tag_of(keys.item_cooc(partner)) == keys.item_tag(partner)
                assert set(ops.trims) == {keys.popular, keys.trending, keys.item_cooc(item),
                                          keys.item_cooc(partner)}


def test_a_newcomer_event_draws_on_its_partitions_share_of_the_budget() -> None:
    keys = RedisKeys()
    event = TopicEvent(event_id="e1", type="view", anonymous_id="a1", item_id="sku",
                       ts=1_700_000_000.0)
    counted = Increments(item="sku", popular=0.05, trending=0.05, cooc=[],
                         newcomer_window=472_222)
    policy = AbusePolicy(newcomer_budget=3.0, budget_shares=4, window_s=3600.0)
    ops = event_ops(event, entity="a1", counted=counted, keys=keys, policy=policy,
                    partition=2)
    assert ops.budget == [keys.item_newcomers("sku", 472_222, 2), 0.75, 7201, 0.05, False]


def test_a_forwarded_purchase_makes_the_user_no_second_buyer() -> None:
    # The original purchase counted the anonymous id as the item's buyer; the copy an
    # identify forwards must not add the user as another (one shopper buying twice
    # then read as two buyers, and checkout's buy-again rate dropped at every login).
    keys = RedisKeys()
    original = TopicEvent(event_id="e1", type="purchase", anonymous_id="a1", item_id="sku",
                          ts=1_700_000_000.0)
    copy = original.model_copy(update={"user_id": "u1", "forwarded": True})
    counted = Increments(item="sku", popular=1.0, trending=1.0, cooc=[])
    buyers = {keys.item_buyers("sku"), keys.item_buyers_hll("sku")}

    def written(event: TopicEvent, entity: str) -> set[str]:
        ops = event_ops(event, entity=entity, counted=counted, keys=keys)
        return {key for op in [*ops.always, *ops.guarded]
                for key in (op_key(op), isinstance(op[0], dict) and op[0].get("h")) if key}

    assert buyers <= written(original, "a1")
    assert not buyers & written(copy, "u1")
    assert keys.user_bought("u1") in written(copy, "u1")  # its purchases still the user's
    assert keys.user_cart("u1") in written(copy, "u1")


def test_the_trending_landmark_option_is_one_dict_for_a_batchs_events() -> None:
    # The options are what the script reads (the scale, the catalog gate, the landmark);
    # built once per landmark, not per event: a dict and a list fewer per event alive
    # until the batch is written, which cost the worker more garbage collections.
    keys = RedisKeys()
    policy = AbusePolicy(newcomer_budget=3.0, budget_shares=4, window_s=3600.0)
    landmark = (1_699_000_000.0, 21_600.0)
    expected_l = [keys.trending_epoch, *landmark]
    for gate in (False, True):
        for window in (None, 472_222):
            opts = []
            for n in range(2):
                item = f"sku{n}"
                event = TopicEvent(event_id=f"e{n}", type="view", user_id="u1", item_id=item,
                                   ts=1_700_000_000.0)
                counted = Increments(item=item, popular=1.0, trending=2.0, cooc=[],
                                     newcomer_window=window)
                ops = event_ops(event, entity="u1", counted=counted, keys=keys,
                                policy=policy, bounds=StateBounds(require_catalog=gate),
                                landmark=landmark)
                trend = [op for op in ops.guarded if op_key(op) == keys.trending]
                assert len(trend) == 1 and trend[0][1:] == ["ZINCRBY", keys.trending,
                                                            "2.0", item]
                want: dict[str, object] = {"s": 1} if window else {}
                want["l"] = expected_l
                if gate:
                    want["c"] = [item]
                assert trend[0][0] == want
                assert list(trend[0][0]) == list(want)  # the same key order as before
                popular = [op for op in ops.guarded if op_key(op) == keys.popular][0]
                assert "l" not in (popular[0] if isinstance(popular[0], dict) else {})
                opts.append(trend[0][0])
            if not gate:  # one shared dict; with the gate each event names its item
                assert opts[0] is opts[1]
