"""recommender.batch_step: the abuse rules (issue 12) inside the one batch step (issue 13).

The step decides on the receive time, caps quantities, marks what draws on the newcomer
budget, keeps receipts and caps identify links; the worker and the evaluator's replay
both run it (their parity: tests/integration/stream/test_batch_step_parity.py).
"""

from __future__ import annotations

import pytest

from recommender.abuse import AbusePolicy, window_of
from recommender.batch_step import (
    REHANDOVER_S,
    PlainEvent,
    StepConfig,
    count_event,
    step_entity,
)
from recommender.history import History
from recommender.trending import forward_decay
from recommender.weights import popularity_weight

T = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # start of a window
POLICY = AbusePolicy(window_s=3600, max_per_window=100, ramp_s=3600, min_trust=0.05,
                     max_quantity=2, newcomer_budget=3.0)
CONFIG = StepConfig(history_max=50, cooc_window=5, trending_half_life_s=7200.0, abuse=POLICY,
                    bought_max=10, identify_max_links=2)


def ev(n: int, item: str | None, etype: str = "view", *, ts: float, received: float | None = None,
       quantity: int | None = None, user: str | None = None) -> PlainEvent:
    return PlainEvent(f"e{n}", etype, item, ts, quantity, user, received)


def test_plain_event_times_follow_the_topic_event_rules() -> None:
    assert ev(1, "a", ts=T).receive_time == ev(1, "a", ts=T).order_ts == T
    back = ev(1, "a", ts=T - 86400, received=T)
    assert (back.receive_time, back.order_ts) == (T, T - 86400)
    ahead = ev(1, "a", ts=T + 60, received=T)
    assert (ahead.receive_time, ahead.order_ts) == (T, T)


def test_a_new_id_is_discounted_on_its_receive_time_not_its_claimed_time() -> None:
    # Claims to be a day old: still a new id (its weight is decided on arrival), and its
    # trending share decays from the day it claims: a backfill is not today's trend.
    got = count_event(ev(1, "a", ts=T - 86400, received=T + 10), History(), t0=T,
                      config=CONFIG)
    assert got is not None
    assert got.popular == pytest.approx(POLICY.min_trust)
    assert got.trending == pytest.approx(
        POLICY.min_trust * float(forward_decay(T - 86400, t0=T, half_life_s=7200.0)))
    assert got.newcomer_window == window_of(T + 10, POLICY.window_s)


def test_a_timestamp_ahead_of_arrival_cannot_inflate_trending() -> None:
    hist = History(first_received=T - 7200)
    ahead = count_event(ev(1, "a", ts=T + 3600, received=T), hist, t0=T, config=CONFIG)
    now = count_event(ev(2, "b", ts=T, received=T), hist, t0=T, config=CONFIG)
    assert ahead is not None and now is not None
    assert ahead.trending == pytest.approx(now.trending) == pytest.approx(1.0)


def test_a_trusted_id_counts_fully_and_draws_no_budget() -> None:
    hist = History(first_received=T - 7200)
    got = count_event(ev(1, "a", ts=T, received=T), hist, t0=T, config=CONFIG)
    assert got is not None and got.popular == 1.0 and got.newcomer_window is None


def test_no_budget_configured_marks_nothing() -> None:
    config = StepConfig(abuse=AbusePolicy(newcomer_budget=0.0))
    got = count_event(ev(1, "a", ts=T), History(), t0=T, config=config)
    assert got is not None and 0 < got.popular < 1 and got.newcomer_window is None


def test_purchase_quantity_is_capped() -> None:
    hist = History(first_received=T - 7200)
    got = count_event(ev(1, "a", "purchase", ts=T, quantity=1_000_000), hist, t0=T,
                      config=CONFIG)
    assert got is not None
    assert got.popular == pytest.approx(popularity_weight("purchase", 2))


def test_impressions_and_itemless_events_count_for_no_item() -> None:
    assert count_event(ev(1, None, ts=T), History(), t0=T, config=CONFIG) is None
    assert count_event(ev(1, "a", "impression", ts=T), History(), t0=T, config=CONFIG) is None


def test_step_keeps_receipts_and_counts_a_pair_once_per_window() -> None:
    hist = History(first_received=T - 7200)
    events = [ev(1, "a", ts=T - 86400, received=T + 1), ev(2, "a", ts=T + 2, received=T + 2),
              ev(3, "b", ts=T + 3, received=T + 3)]
    step = step_entity(hist, events, t0=T, config=CONFIG)
    popular = [c.popular if c else None for _, c in step.counted]
    assert popular == [1.0, 0.0, 1.0]  # the second view of "a" in the window adds nothing
    assert step.changed and step.added == [0, 1, 2]
    assert [(r[1], r[4]) for r in hist.receipts] == [("a", T + 1), ("b", T + 3)]
    assert ("e1", "a", "view", T - 86400, T + 1) in hist.entries  # ordered by claimed time
    assert hist.first_received == T - 7200


def test_step_without_a_policy_counts_fully_and_keeps_no_receipts() -> None:
    step = step_entity(History(), [ev(1, "a", ts=T), ev(2, "a", ts=T + 1)], t0=T,
                       config=StepConfig(cooc_window=5))
    assert [c.popular for _, c in step.counted if c] == [1.0, 1.0]
    assert step.history.receipts == [] and step.history.first_received is None


def test_identify_links_are_capped_and_refused_ones_forward_nothing() -> None:
    hist = History()
    events = [ev(1, "a", ts=T), ev(2, None, "identify", ts=T + 1, user="u1"),
              ev(3, None, "identify", ts=T + 2, user="u2"),
              ev(4, None, "identify", ts=T + 3, user="u3"),
              ev(5, "b", ts=T + 4)]
    step = step_entity(hist, events, t0=T, config=CONFIG)
    assert step.identify_refused == 1
    assert hist.links == ["u1", "u2"] and hist.alias == "u2"
    assert [f.target for f in step.forwards] == ["u1", "u2", "u2"]  # two snapshots, then e5
    assert step.forwards[-1].event == 4
    assert [pos for pos, _ in step.counted] == [0, 4]


def test_an_identify_as_the_current_alias_forwards_nothing_again() -> None:
    """The user got the snapshot at the first identify and every event since as it came:
    the same identify repeated (anyone holding the tracking key can) copied the whole
    history to the log each time. Back to a user after another one: what came since its
    own snapshot."""
    hist = History()
    events = [ev(1, "a", ts=T), ev(2, None, "identify", ts=T + 1, user="u1"),
              ev(3, "b", ts=T + 2), *(ev(n, None, "identify", ts=T + n, user="u1")
                                      for n in range(4, 40)),
              ev(40, None, "identify", ts=T + 40, user="u2"),
              ev(41, None, "identify", ts=T + 41, user="u1")]
    step = step_entity(hist, events, t0=T, config=CONFIG)
    assert [(f.target, f.entries is None) for f in step.forwards] == [
        ("u1", False), ("u1", True), ("u2", False), ("u1", False)]
    # back to u1: only what came since its snapshot (b, which it also got as it came)
    assert [len(f.entries or ()) for f in step.forwards] == [1, 0, 2, 1]
    assert len(step.identified) == 39 and step.identify_refused == 0
    again = step_entity(hist, [ev(42, None, "identify", ts=T + 42, user="u1")], t0=T,
                        config=CONFIG)
    assert again.forwards == [] and again.identified == [0] and not again.changed
    # A day after the last snapshot it goes again (the user's history may have expired
    # from the table meanwhile); a history an older version wrote records no snapshot.
    day = step_entity(hist, [ev(43, None, "identify", ts=T + 41 + REHANDOVER_S,
                                user="u1")], t0=T, config=CONFIG)
    assert [f.entries is None for f in day.forwards] == [False] and day.changed
    older = History.from_dict({k: v for k, v in hist.to_dict().items()
                               if k not in ("handed", "handed_to")})
    for n in (44, 45):  # (the same receive time would be the first one redelivered)
        step = step_entity(older, [ev(n, None, "identify", ts=T + 6 + n + REHANDOVER_S,
                                      user="u1")], t0=T, config=CONFIG)
        assert len(step.forwards) == (1 if n == 44 else 0)
    assert History.from_dict(older.to_dict()).handed == T + 50 + REHANDOVER_S


def test_switching_between_linked_users_hands_over_only_what_each_lacks() -> None:
    """An identify as u1, then u2, then u1 again, and so on (anyone holding the tracking
    key can send them) copied the whole history to the log at every switch: each user
    gets the entries received since its own last snapshot, the whole history again only
    a day after it."""
    hist = History()
    views = [ev(n, f"i{n}", ts=T + n) for n in range(1, 41)]
    first = step_entity(hist, [*views, ev(41, None, "identify", ts=T + 41, user="u1"),
                               ev(42, None, "identify", ts=T + 42, user="u2")],
                        t0=T, config=CONFIG)
    assert [len(f.entries or ()) for f in first.forwards] == [40, 40]
    switches = [ev(n, None, "identify", ts=T + n, user="u1" if n % 2 else "u2")
                for n in range(43, 143)]
    step = step_entity(hist, [*switches[:50], ev(200, "new", ts=T + 92), *switches[50:]],
                       t0=T, config=CONFIG)
    assert len(step.identified) == 100 and step.identify_refused == 0
    copied = [e[0] for f in step.forwards for e in f.entries or ()]
    assert sorted(copied) == ["e200", "e200"]  # the one new view, once to each user
    assert [f.target for f in step.forwards if f.event is not None] == ["u2"]
    assert History.from_dict(hist.to_dict()).handed_to == {"u1": T + 141, "u2": T + 142}
    day = step_entity(hist, [ev(300, None, "identify", ts=T + 142 + REHANDOVER_S, user="u1")],
                      t0=T, config=CONFIG)
    assert [len(f.entries or ()) for f in day.forwards] == [41]


def test_switching_back_sends_the_copies_of_evicted_cart_and_purchases_only_when_new() -> None:
    """A history whose cart additions and purchases the cap evicted hands copies of them
    over (their originals are gone): every switch between two linked users sent all of
    them again (up to bought_max + cart_max copies, ~100 KB, per identify). A user gets
    them again only when they changed since its own last snapshot."""
    config = StepConfig(history_max=20, bought_max=50, cart_max=30, identify_max_links=3)
    hist = History()
    events = [ev(n, f"c{n}", "add_to_cart", ts=T + n) for n in range(30)]
    events += [ev(100 + n, f"v{n}", ts=T + 100 + n) for n in range(20)]  # evict them
    events += [ev(200, None, "identify", ts=T + 200, user="u1"),
               ev(201, None, "identify", ts=T + 201, user="u2")]
    first = step_entity(hist, events, t0=T, config=config)
    assert [len(f.entries or ()) for f in first.forwards] == [50, 50]  # 20 + 30 copies
    switches = [ev(300 + n, None, "identify", ts=T + 300 + n, user="u1" if n % 2 else "u2")
                for n in range(1, 41)]
    step = step_entity(hist, switches, t0=T, config=config)
    assert len(step.identified) == 40
    assert sum(len(f.entries or ()) for f in step.forwards) == 0
    # a purchase too old to keep moves the cart and the purchases: each user gets the
    # new copies once, at its next snapshot
    late = step_entity(hist, [ev(400, "c3", "purchase", ts=T + 10, received=T + 400),
                              ev(401, None, "identify", ts=T + 401, user="u1"),
                              ev(402, None, "identify", ts=T + 402, user="u2"),
                              ev(403, None, "identify", ts=T + 403, user="u1")],
                       t0=T, config=config)
    copies = [[e[1] for e in f.entries or ()] for f in late.forwards if f.event is None]
    assert [len(c) for c in copies] == [30, 30, 0] and copies[0] == copies[1]
    assert copies[0].count("c3") == 1  # its purchase now, no longer its cart addition
    again = History.from_dict(hist.to_dict())
    more = step_entity(again, [ev(404, None, "identify", ts=T + 404, user="u2")], t0=T,
                       config=config)
    assert sum(len(f.entries or ()) for f in more.forwards) == 0


def test_a_redelivered_identify_hands_its_snapshot_over_again() -> None:
    """At least once: a worker that stopped after its batch's history reached the table
    but before the forwards reached the log gets the batch again with the history as the
    batch left it (its snapshot recorded as sent). The identify, the same message (same
    receive time), found its own record and forwarded nothing: the user never got the
    history. It now sends the whole snapshot again (the user takes each entry once)."""
    for users in (["u1"], ["u1", "u2"], ["u2", "u1"]):
        hist = History()
        views = [ev(n, f"i{n}", ts=T + n) for n in range(1, 6)]
        batch = [*views, *(ev(10 + k, None, "identify", ts=T + 10 + k, user=u)
                           for k, u in enumerate(users))]
        first = step_entity(hist, batch, t0=T, config=CONFIG)
        again = step_entity(History.from_dict(hist.to_dict()), batch, t0=T, config=CONFIG)
        assert [(f.target, len(f.entries or ())) for f in again.forwards if f.event is None] \
            == [(f.target, len(f.entries or ())) for f in first.forwards if f.event is None]
        assert [len(f.entries or ()) for f in again.forwards][-1] == 5


def test_only_an_anonymous_cart_is_followed_and_an_identify_hands_it_over() -> None:
    config = StepConfig(history_max=2, cart_max=5)
    anon = History()
    events = [ev(1, "c", "add_to_cart", ts=T), ev(2, "v", ts=T + 1), ev(3, "w", ts=T + 2),
              ev(4, None, "identify", ts=T + 3, user="u1")]
    step = step_entity(anon, events, t0=T, config=config)
    assert anon.cart == {"c": T}
    (snapshot,) = [f.entries for f in step.forwards if f.entries is not None]
    assert snapshot is not None and {e[1] for e in snapshot} == {"c", "v", "w"}
    user = History()
    step_entity(user, [ev(5, "c", "add_to_cart", ts=T, user="u1")], t0=T, config=config)
    assert user.cart == {}
    # An addition too old for a full history still moves the cart, and is stored.
    old = step_entity(anon, [ev(6, "o", "add_to_cart", ts=T - 100)], t0=T, config=config)
    assert old.changed and "o" in anon.cart
    # The same events redelivered (a worker restarted before its commit) change nothing.
    again = step_entity(anon, [ev(6, "o", "add_to_cart", ts=T - 100),
                               ev(1, "c", "add_to_cart", ts=T)], t0=T, config=config)
    assert not again.changed and anon.cart == {"c": T, "o": T - 100}
