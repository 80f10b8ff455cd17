"""Forward decay arithmetic, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.trending import (
    REBASE_EXPONENT,
    decayed_score,
    forward_decay,
    needs_rebase,
    rebase_factor,
)

H = 3600.0


def test_forward_decay_values() -> None:
    assert forward_decay(1000.0, t0=1000.0, half_life_s=H) == 1.0
    assert forward_decay(1000.0 + H, t0=1000.0, half_life_s=H) == 2.0
    assert forward_decay(1000.0 + 3 * H, t0=1000.0, half_life_s=H) == 8.0
    assert forward_decay(1000.0 - H, t0=1000.0, half_life_s=H) == 0.5
    assert forward_decay(1000.0 + H / 2, t0=1000.0, half_life_s=H) == pytest.approx(2**0.5)
    arr = forward_decay(np.array([0.0, H, 2 * H]), t0=0.0, half_life_s=H)
    assert isinstance(arr, np.ndarray)
    np.testing.assert_allclose(arr, [1.0, 2.0, 4.0])
    with pytest.raises(ValueError):
        forward_decay(1.0, t0=0.0, half_life_s=0.0)


def test_decayed_score_is_weight_halved_per_elapsed_half_life() -> None:
    t0 = 0.0
    # An event of weight 3 at t = 2H and one of weight 1 at t = 4H, read at t = 5H:
    # 3 * 2^-3 + 1 * 2^-1 = 0.375 + 0.5 = 0.875
    stored = 3 * forward_decay(2 * H, t0=t0, half_life_s=H) + forward_decay(
        4 * H, t0=t0, half_life_s=H
    )
    assert stored == 3 * 4 + 16
    assert decayed_score(stored, 5 * H, t0, H) == pytest.approx(0.875)
    assert decayed_score(stored, 4 * H, t0, H) == pytest.approx(1.75)


def test_rebase_preserves_decayed_values() -> None:
    old_t0, new_t0 = 0.0, 10 * H
    stored_old = 5.0 * forward_decay(12 * H, t0=old_t0, half_life_s=H)  # 5 * 2^12
    factor = rebase_factor(old_t0, new_t0, H)
    assert factor == 2.0**-10
    stored_new = stored_old * factor
    assert stored_new == 5.0 * forward_decay(12 * H, t0=new_t0, half_life_s=H) == 20.0
    assert decayed_score(stored_new, 13 * H, new_t0, H) == pytest.approx(
        decayed_score(stored_old, 13 * H, old_t0, H)
    )


def test_needs_rebase_threshold() -> None:
    assert REBASE_EXPONENT == 50.0
    assert not needs_rebase(50 * H, 0.0, H)
    assert needs_rebase(50 * H + 1, 0.0, H)
    assert not needs_rebase(-1e9, 0.0, H)
