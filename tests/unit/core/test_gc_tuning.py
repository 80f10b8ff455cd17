"""The worker's collector thresholds: rarer young collections while it is behind, the
usual ones as soon as it is not (core.gc_tuning.backlog_gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core.gc_tuning import BACKLOG_THRESHOLDS, THRESHOLDS, backlog_gc, step_gc


@pytest.fixture(autouse=True)
def _restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_backlog_makes_young_collections_rarer_and_catching_up_restores_them() -> None:
    assert BACKLOG_THRESHOLDS[0] > THRESHOLDS[0]
    backlog_gc(True)
    assert gc.get_threshold() == BACKLOG_THRESHOLDS
    backlog_gc(True)
    assert gc.get_threshold() == BACKLOG_THRESHOLDS
    backlog_gc(False)
    assert gc.get_threshold() == THRESHOLDS


def test_a_step_while_behind_runs_without_the_collector_and_gives_it_back() -> None:
    assert gc.isenabled()
    with step_gc(True):
        assert not gc.isenabled()
    assert gc.isenabled()
    with step_gc(False):
        assert gc.isenabled()
    with pytest.raises(RuntimeError), step_gc(True):
        raise RuntimeError("a failed step")
    assert gc.isenabled()
