"""recommender.coalesce: lists wait and are rebuilt once per entity, oldest first, those
that waited the maximum delay first; a batch rebuilds a bounded number, due ones included
(a wave of due re-folds is spread over batches), and a worker that is not behind fills
that bound with the oldest of the others; an entity keeps a bounded number of receive
times."""

from __future__ import annotations

from recommender.coalesce import (
    BUSY_FULL,
    DUE_FLOOR,
    DUE_FLOOR_PER_S,
    IDLE_AFTER_S,
    WAITING_TIMES,
    Coalescer,
    SpareTime,
)


def test_a_waiting_entity_collects_the_receive_times_of_all_its_events() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=10)
    assert c.defer({"a": [1.0], "b": [1.5]}, now=10.0) == ["a", "b"]
    assert c.defer({"a": [2.0, 2.5]}, now=11.0) == []  # already waiting: once
    assert c.pending == 2
    assert c.take(now=11.0, behind=True) == {}  # nobody waited 5 s yet
    assert c.take(now=15.0, behind=True) == {"a": [1.0, 2.0, 2.5], "b": [1.5]}
    assert c.pending == 0


def test_while_behind_only_those_that_waited_the_maximum_delay_are_taken() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=1)
    c.defer({"old": [1.0]}, now=0.0)
    c.defer({"new": [2.0]}, now=3.0)
    # Behind, the per-batch bound does not hold back lists that waited long enough.
    assert list(c.take(now=5.0, behind=True)) == ["old"]
    assert c.pending == 1


def test_caught_up_the_oldest_go_first_a_bounded_number_per_batch() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=2)
    for i, entity in enumerate("abcde"):
        c.defer({entity: [float(i)]}, now=float(i))
    assert list(c.take(now=4.5, behind=False)) == ["a", "b"]
    # The batch's own entities come out too, beyond the bound, with their waited times.
    assert c.take(now=4.5, behind=False, skip=["e"]) == {"e": [4.0], "c": [2.0], "d": [3.0]}
    assert c.pending == 0


def test_due_lists_go_first_and_a_wave_of_them_is_spread_over_batches() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=2)
    for i, entity in enumerate("abcd"):
        c.defer({entity: [float(i)]}, now=float(i))
    # a, b and c waited 5 s: a batch takes the bound's worth, behind or not.
    assert list(c.take(now=7.0, behind=True)) == ["a", "b"]
    assert list(c.take(now=7.0, behind=True)) == ["c"]  # d is not due: it waits
    assert list(c.take(now=7.0, behind=False)) == ["d"]  # caught up: the oldest anyway
    # The idle timer's groups stay bounded (a lone event waits for one group at most).
    for entity in "efg":
        c.defer({entity: [5.0]}, now=5.0)
    assert list(c.take(now=20.0, behind=False, most=1)) == ["e"]


def test_an_entity_keeps_its_oldest_receive_times_up_to_the_bound() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=10)
    c.defer({"a": [float(i) for i in range(WAITING_TIMES + 5)]}, now=0.0)
    c.defer({"a": [100.0]}, now=1.0)
    taken = c.take(now=1.0, behind=False)
    assert taken == {"a": [float(i) for i in range(WAITING_TIMES)]}
    c.give_back({"a": [1.0] * WAITING_TIMES}, now=2.0)  # a failed step's, with new ones
    c.defer({"a": [3.0]}, now=3.0)
    assert len(c.take(now=3.0, behind=True)["a"]) == WAITING_TIMES


def test_lists_left_by_another_worker_are_restored_and_forgotten_on_revocation() -> None:
    c = Coalescer(max_delay_s=5.0, per_batch=10)
    c.restore(["x", "y"], now=0.0)
    c.defer({"x": [1.0]}, now=1.0)
    assert c.take(now=1.0, behind=False) == {"x": [1.0], "y": []}
    c.defer({"z": [1.0]}, now=2.0)
    assert c.forget() == ["z"] and c.pending == 0


def test_a_zero_delay_turns_coalescing_off() -> None:
    assert not Coalescer(max_delay_s=0.0, per_batch=5).enabled
    assert Coalescer(max_delay_s=0.1, per_batch=5).enabled


def test_batches_back_to_back_leave_no_time_to_spare_until_they_stop() -> None:
    spare = SpareTime()
    assert spare.spare(0.0)  # no batch seen yet
    t = 0.0
    for _ in range(20):  # 120 ms batches, 10 ms apart: ~92 % busy
        spare.began(t)
        spare.ended(t + 0.12)
        t += 0.13
    assert spare.busy_share > 0.8
    assert not spare.spare(t) and not spare.spare(t + IDLE_AFTER_S / 2)
    assert spare.spare(t - 0.01 + IDLE_AFTER_S)  # no batch since the last ended: idle


def test_short_batches_far_apart_leave_time_to_spare() -> None:
    spare = SpareTime()
    t = 0.0
    for _ in range(20):  # 5 ms batches every 50 ms: 10 % busy
        spare.began(t)
        spare.ended(t + 0.005)
        t += 0.05
    assert spare.busy_share < 0.2 and spare.spare(t)
    spare.began(t)
    assert spare.spare(t + 0.001)  # inside a batch: the mean decides


def test_due_refolds_a_batch_takes_shrink_as_the_worker_gets_busier() -> None:
    spare = SpareTime()
    assert spare.due_budget(64, 0.0) == 64  # no batch seen
    spare.busy_share = 0.6
    assert spare.due_budget(64, 1.0) == 32  # halfway from SPARE_BELOW to BUSY_FULL
    spare.busy_share = 0.65
    assert 15 <= spare.due_budget(64, 2.0) <= 16  # a quarter (float rounding aside)
    for k, share in enumerate((BUSY_FULL, 0.99, 1.0)):  # beyond: the floor rate, in
        spare.busy_share = share                        # groups of DUE_FLOOR
        assert spare.due_budget(64, 10.0 + k) == DUE_FLOOR
    assert spare.due_budget(2, 20.0) == 2


def test_due_refolds_come_in_groups_never_one_per_batch() -> None:
    """At the floor rate and 20 batches a second a batch took one due re-fold, each at
    ~4 times a grouped one's CPU: now nothing until a group's worth accrued, then the
    group; a ramp that grants less than a group waits for the floor's the same way."""
    spare = SpareTime()
    spare.busy_share = 0.95
    spare.due_budget(64, 0.0)  # the initial allowance spent
    taken = [spare.due_budget(64, k / 20) for k in range(1, 41)]
    assert set(taken) == {0, DUE_FLOOR} and sum(taken) == 2 * DUE_FLOOR
    spare.busy_share = 0.69  # the ramp grants int(64 * 0.05) = 3: below a group
    assert spare.due_budget(64, 3.0) == DUE_FLOOR  # the floor's group, accrued meanwhile
    assert spare.due_budget(64, 3.05) == 0


def test_a_busy_worker_takes_due_refolds_at_the_floor_rate_however_often_it_batches(
) -> None:
    spare = SpareTime()
    spare.busy_share = 0.95
    for batches_per_s in (2, 20, 200):  # 10 s of batches each
        spare.due_budget(64, 100.0 * batches_per_s)  # the floor full again, then spent
        t0 = 100.0 * batches_per_s + 1.0
        taken = sum(spare.due_budget(64, t0 + k / batches_per_s)
                    for k in range(1, 10 * batches_per_s + 1))
        most = min(DUE_FLOOR_PER_S, DUE_FLOOR * batches_per_s) * 10
        # the allowance carries up to two groups across batches
        assert most - DUE_FLOOR <= taken <= most + 2 * DUE_FLOOR
