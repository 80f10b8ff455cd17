"""``lists_settled``: when the stored lists are those of the live model (tests, the
evaluator and scripts wait for it before reading lists after a retrain)."""

from __future__ import annotations

from typing import Any

from streamrec.ops.status import lists_settled


def _status(*workers: dict[str, Any], version: str | None = "v2") -> dict[str, Any]:
    return {"model_version": version, "workers": list(workers)}


def _worker(model: str = "v2", sweep: str = "v2", pending: int = 0,
            stale: bool = False) -> dict[str, Any]:
    return {"model_version": model, "sweep_version": sweep, "sweep_pending": pending,
            "stale": stale}


def test_settled_once_the_sweep_for_the_live_model_ran() -> None:
    assert lists_settled(_status(_worker(), _worker()))


def test_a_sweep_not_started_yet_is_not_settled() -> None:
    # The worker loaded v2 but has not taken a batch since: nothing pending *yet*.
    assert not lists_settled(_status(_worker(sweep="v1")))


def test_pending_or_an_older_model_is_not_settled() -> None:
    assert not lists_settled(_status(_worker(pending=3)))
    assert not lists_settled(_status(_worker(model="v1", sweep="v1")))


def test_stale_workers_do_not_count_but_one_live_worker_must_exist() -> None:
    assert lists_settled(_status(_worker(), _worker(model="v1", sweep="v1", stale=True)))
    assert not lists_settled(_status(_worker(stale=True)))
    assert not lists_settled(_status())


def test_before_any_model_nothing_is_to_sweep() -> None:
    assert lists_settled(_status(_worker(model="", sweep=""), version=None))
