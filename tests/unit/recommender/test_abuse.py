"""recommender.abuse: caps per item/type/window and per window, the new-id discount, on
receive time; quantity capped; which events draw on the newcomer budget."""

from __future__ import annotations

import pytest

from recommender.abuse import AbusePolicy, Entry, assess, contribution, trust

P = AbusePolicy(window_s=3600, max_per_window=3, ramp_s=3600, min_trust=0.05)
T = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # start of a window


def c(item: str, etype: str, ts: float, prior: list[Entry], event_id: str = "new") -> float:
    return contribution(event_id=event_id, item_id=item, event_type=etype, ts=ts,
                        prior=prior, policy=P)


def test_trust_ramps_from_min_to_one() -> None:
    assert trust(0, ramp_s=100, min_trust=0.1) == pytest.approx(0.1)
    assert trust(50, ramp_s=100, min_trust=0.1) == pytest.approx(0.55)
    assert trust(1e9, ramp_s=100, min_trust=0.1) == 1.0
    assert trust(-5, ramp_s=100, min_trust=0.1) == pytest.approx(0.1)
    assert trust(0, ramp_s=0, min_trust=0.1) == 1.0


def test_first_event_of_a_fresh_id_weighs_min_trust() -> None:
    assert c("a", "view", T, []) == pytest.approx(0.05)


def test_established_id_counts_fully() -> None:
    prior = [("old", "x", "view", T - 7200)]
    assert c("a", "view", T + 10, prior) == 1.0


def test_same_item_and_type_counts_once_per_window() -> None:
    prior = [("old", "x", "view", T - 7200), ("e1", "a", "view", T + 1)]
    assert c("a", "view", T + 2, prior) == 0.0
    assert c("a", "add_to_cart", T + 2, prior) == 1.0  # another type still counts
    assert c("a", "view", T + 3600, prior) == 1.0  # next window counts again


def test_at_most_max_per_window_contributions() -> None:
    prior = [("old", "x", "view", T - 7200)] + [
        (f"e{i}", f"i{i}", "view", T + i) for i in range(3)]
    assert c("fourth", "view", T + 10, prior) == 0.0
    assert c("fourth", "view", T + 3600, prior) == 1.0


def test_purchases_get_the_new_id_discount_and_the_caps() -> None:
    assert c("a", "purchase", T, []) == pytest.approx(0.05)
    assert c("a", "purchase", T + 1, [("p1", "a", "purchase", T)]) == 0.0


def test_decisions_use_receive_time_not_the_claimed_time() -> None:
    """An id whose first view claims to be a day old is still new; views claiming to be
    spread over 20 hours that all arrived in one window count once."""
    backdated = [("v0", "a", "view", T - 86_400, T + 1)]  # (.., ts, received)
    assert assess(event_id="v1", item_id="b", event_type="view", received=T + 2,
                  prior=backdated, policy=P) == pytest.approx((0.05, 0.05), abs=1e-3)
    spread = [(f"v{i}", "a", "view", T - i * 360, T + i) for i in range(1, 3)]
    assert c("a", "view", T + 10, spread) == 0.0  # same receive window: counted already


def test_trust_is_reported_even_when_a_cap_applies() -> None:
    prior = [("p1", "a", "view", T)]
    assert assess(event_id="n", item_id="a", event_type="view", received=T + 1,
                  prior=prior, policy=P) == (0.0, pytest.approx(0.05, abs=1e-3))


def test_a_backfill_is_trusted_but_still_capped_per_entity() -> None:
    """An operator's backfill (``TopicEvent.backfill``) counts fully from its id's first
    event and draws on no newcomer budget; the per-entity caps still hold."""
    assert assess(event_id="v1", item_id="a", event_type="view", received=T, prior=[],
                  policy=P, trusted=True) == (1.0, 1.0)
    prior = [("v1", "a", "view", T)]
    assert assess(event_id="v2", item_id="a", event_type="view", received=T + 1,
                  prior=prior, policy=P, trusted=True) == (0.0, 1.0)


def test_quantity_is_capped() -> None:
    policy = AbusePolicy(max_quantity=10)
    assert policy.quantity(1_000_000) == 10 and policy.quantity(3) == 3
    assert policy.quantity(None) is None


def test_decision_ignores_the_event_itself_and_later_events() -> None:
    """A redelivered event already in the history, or events ordered after it, change
    nothing: the same event always gets the same weight (replays are identical)."""
    base = [("old", "x", "view", T - 7200)]
    first = c("a", "view", T + 5, base, event_id="e5")
    later = base + [("e5", "a", "view", T + 5), ("e6", "a", "view", T + 6),
                    ("e9", "b", "view", T + 9)]
    assert c("a", "view", T + 5, later, event_id="e5") == first == 1.0


def test_flood_from_one_id_adds_one_unit() -> None:
    history: list[Entry] = [("old", "x", "view", T - 7200)]
    total = 0.0
    for i in range(1000):
        entry = (f"f{i:04d}", "target", "view", T + i * 0.5)
        total += c("target", "view", entry[3], history, event_id=entry[0])
        history.append(entry)
    assert total == 1.0


def test_invalid_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_trust"):
        AbusePolicy(min_trust=0)
    with pytest.raises(ValueError, match="window_s"):
        AbusePolicy(window_s=0)
    with pytest.raises(ValueError, match="max_per_window"):
        AbusePolicy(max_per_window=0)
    with pytest.raises(ValueError, match="max_quantity"):
        AbusePolicy(max_quantity=0)
    with pytest.raises(ValueError, match="newcomer_budget"):
        AbusePolicy(newcomer_budget=-1)
    with pytest.raises(ValueError, match="budget_shares"):
        AbusePolicy(budget_shares=0)


def test_the_newcomer_budget_splits_into_one_share_per_partition() -> None:
    assert AbusePolicy(newcomer_budget=3.0).budget_share() == 3.0
    assert AbusePolicy(newcomer_budget=3.0, budget_shares=4).budget_share() == 0.75


def test_receipts_keep_the_first_event_of_each_pair_in_the_latest_window() -> None:
    from recommender.abuse import note_receipt

    receipts: list[Entry] = []
    assert note_receipt(receipts, ("b", "a", "view", 0.0, T + 2), window_s=3600, max_pairs=2)
    assert not note_receipt(receipts, ("c", "a", "view", 0.0, T + 3), window_s=3600,
                            max_pairs=2)  # a repeat: the first is kept
    assert note_receipt(receipts, ("a", "a", "view", 0.0, T + 2), window_s=3600,
                        max_pairs=2)  # ordered before "b": now the pair's first
    assert [r[0] for r in receipts] == ["a"]
    assert note_receipt(receipts, ("d", "x", "view", 0.0, T + 4), window_s=3600, max_pairs=2)
    assert not note_receipt(receipts, ("e", "y", "view", 0.0, T + 5), window_s=3600,
                            max_pairs=2)  # full
    assert not note_receipt(receipts, ("d", "x", "view", 0.0, T + 4), window_s=3600,
                            max_pairs=2)  # redelivered
    assert note_receipt(receipts, ("f", "a", "view", 0.0, T + 3600), window_s=3600,
                        max_pairs=2)  # next window: the old one is forgotten
    assert [r[0] for r in receipts] == ["f"]


def test_an_established_id_cannot_repeat_views_by_dating_them_back() -> None:
    """Back-dated events drop out of a full history at once (it keeps the newest by
    claimed time); the receipts still see them, so the 2nd..nth view count nothing."""
    from recommender.history import History

    h = History()
    for i in range(200):  # an hour ago: a full history of ordinary browsing
        h.apply([(f"old{i}", f"i{i}", "view", T - 3600 + i, T - 3600 + i)], max_entries=200)
        h.note_receipt((f"old{i}", f"i{i}", "view", T - 3600 + i, T - 3600 + i),
                       window_s=3600, max_pairs=100)
    total = 0.0
    for k in range(50):
        entry = (f"bd{k}", "evil", "view", 1e6 + k, T + k)  # dated 1970, received now
        total += assess(event_id=entry[0], item_id="evil", event_type="view",
                        received=entry[4], prior=h.receipts, policy=P,
                        first_received=h.first_received)[0]
        h.note_receipt(entry, window_s=3600, max_pairs=100)
        assert h.apply([entry], max_entries=200) == []  # too old to keep
    assert total == 1.0


def test_one_request_counts_once_whatever_its_event_ids() -> None:
    """The API spaces a request's receive times by a microsecond, so event ids chosen to
    sort before each other do not make every view the first one."""
    from recommender.history import History

    h = History()
    total = 0.0
    for k in range(200):
        entry = (f"z{999 - k:03d}", "evil", "view", T - k * 360, T + k * 1e-6)
        total += assess(event_id=entry[0], item_id="evil", event_type="view",
                        received=entry[4], prior=h.receipts, policy=P,
                        first_received=h.first_received)[0]
        h.note_receipt(entry, window_s=3600, max_pairs=100)
    assert total == pytest.approx(0.05, abs=1e-6)
