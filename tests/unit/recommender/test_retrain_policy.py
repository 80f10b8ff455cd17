"""When a scheduled retrain is due: the log's end offsets grew by the growth share since
the last retrain read them, and the minimum gap since it has passed."""

from __future__ import annotations

from recommender.retrain_policy import log_growth, retrain_due

DUE = {"trained_at": 1000.0, "growth": 0.05, "min_gap_s": 60.0, "interval_s": 600.0}


def test_growth_counts_what_each_partition_gained_since_the_retrain_read_it() -> None:
    assert log_growth({0: 120, 1: 80}, {0: 100, 1: 80}) == (20, 180)
    # A partition that went back (a re-created topic) adds nothing; a new one all it has.
    assert log_growth({0: 10, 1: 5}, {0: 100}) == (5, 100)


def test_a_log_that_did_not_grow_by_the_share_is_never_retrained() -> None:
    trained = {0: 500, 1: 500}
    # However long ago and however many events were processed since: the log is the same.
    assert not retrain_due(ends=trained, trained=trained, now=10**9, **DUE)
    assert not retrain_due(ends={0: 549, 1: 500}, trained=trained, now=10**9, **DUE)
    assert retrain_due(ends={0: 525, 1: 525}, trained=trained, now=10**9, **DUE)


def test_growth_retrains_wait_for_the_minimum_gap() -> None:
    trained = {0: 100}
    grown = {0: 1000}
    assert not retrain_due(ends=grown, trained=trained, now=1059.0, **DUE)
    assert retrain_due(ends=grown, trained=trained, now=1060.0, **DUE)


def test_without_a_growth_share_retrains_are_timed_and_need_a_grown_log() -> None:
    timed = {**DUE, "growth": 0.0}
    assert not retrain_due(ends={0: 101}, trained={0: 100}, now=1599.0, **timed)
    assert retrain_due(ends={0: 101}, trained={0: 100}, now=1600.0, **timed)
    assert not retrain_due(ends={0: 100}, trained={0: 100}, now=10**9, **timed)


def test_a_model_without_recorded_end_offsets_counts_as_trained_on_nothing() -> None:
    assert retrain_due(ends={0: 1}, trained={}, now=2000.0, **DUE)


def test_a_due_retrain_waits_while_the_worker_is_behind_but_not_forever() -> None:
    from recommender.retrain_policy import POSTPONE_MAX_S, postponed

    assert postponed(behind=True, due_since=100.0, now=100.0 + POSTPONE_MAX_S - 1)
    assert not postponed(behind=True, due_since=100.0, now=100.0 + POSTPONE_MAX_S)
    assert not postponed(behind=False, due_since=100.0, now=100.0)


def test_the_gap_counts_from_the_last_attempt_too_whatever_it_came_to() -> None:
    trained, grown = {0: 100}, {0: 1000}
    # An attempt that published nothing ended at 5000: the next waits the gap from then.
    assert not retrain_due(ends=grown, trained=trained, now=5059.0, attempted_at=5000.0, **DUE)
    assert retrain_due(ends=grown, trained=trained, now=5060.0, attempted_at=5000.0, **DUE)


def test_a_worker_counts_as_catching_up_for_a_while_after_its_last_backlog() -> None:
    """A burst's last steps find no backlog while their batch still runs for seconds:
    the retrain waits :data:`CATCH_UP_SETTLE_S` after the last step that found one."""
    from recommender.retrain_policy import CATCH_UP_SETTLE_S, catching_up

    assert catching_up(behind=True, behind_at=None, now=50.0)
    assert not catching_up(behind=False, behind_at=None, now=50.0)
    assert catching_up(behind=False, behind_at=50.0, now=50.0 + CATCH_UP_SETTLE_S - 0.1)
    assert not catching_up(behind=False, behind_at=50.0, now=50.0 + CATCH_UP_SETTLE_S)
