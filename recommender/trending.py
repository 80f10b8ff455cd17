"""Forward exponential decay for the trending score (Cormode, Shkapenyuk, Srivastava &
Xu, "Forward Decay", ICDE 2009).

Classic exponential decay multiplies every stored score by ``2^(−Δ/half_life)`` as time
passes, which means rewriting all scores on a clock, and makes the result depend on when
the processing happened. Forward decay stores instead each event's weight *grown* by its
distance from a fixed landmark ``t0``::

    stored += w · 2^((t − t0) / half_life)

Dividing by ``2^((now − t0) / half_life)`` at read time gives exactly the decayed sum
``Σ w · 2^((t − now) / half_life)``, and rankings at any single moment do not even need
that division. Scores are a pure function of event times, so replays give identical
values. The only housekeeping is that the growth factor explodes as time moves away from
``t0``: once it passes :data:`REBASE_EXPONENT` half-lives, move ``t0`` forward and
multiply every stored score by :func:`rebase_factor`, dropping the items whose score has
decayed under :data:`FORGET_BELOW`.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt

#: Rebase once event times are this many half-lives past ``t0``. Factors up to 2^50 ≈ 1e15
#: stay far below float overflow (2^1024) even summed over billions of events, and the
#: magnitude costs no relative precision. With a 2 h half-life: a rebase every ~4 days.
REBASE_EXPONENT = 50.0

#: Half-lives after which one full-weight event no longer makes an item trending: at a
#: rebase, items whose score (then ≈ their decayed score now) is under ``2^-24`` are
#: dropped (two days at a 2 h half-life). Without it a backfill of old history stayed
#: in the set at a score of 0.0 and was served as "trending now" in id order whenever
#: fewer than ``n`` items had risen since.
FORGET_HALF_LIVES = 24.0
FORGET_BELOW = 2.0 ** -FORGET_HALF_LIVES


@overload
def forward_decay(ts: float, *, t0: float, half_life_s: float) -> float: ...


@overload
def forward_decay(
    ts: npt.NDArray[np.floating], *, t0: float, half_life_s: float
) -> npt.NDArray[np.float64]: ...


def forward_decay(
    ts: float | npt.NDArray[np.floating], *, t0: float, half_life_s: float
) -> float | npt.NDArray[np.float64]:
    """Return the forward-decay growth factor ``2^((ts − t0) / half_life_s)``.

    Multiply an event's weight by this before adding it to a trending score whose
    landmark is ``t0``.

    Parameters
    ----------
    ts
        Event time(s), epoch seconds.
    t0
        The landmark time the stored scores are relative to.
    half_life_s
        Time for a contribution's weight to halve, seconds.

    Returns
    -------
    float or numpy.ndarray
        The factor, shaped like ``ts`` (a float for a scalar).
    """
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    if isinstance(ts, np.ndarray):
        return np.exp2((ts.astype(np.float64) - t0) / half_life_s)
    return float(2.0 ** ((float(ts) - t0) / half_life_s))


def needs_rebase(ts: float, t0: float, half_life_s: float) -> bool:
    """Tell whether events at ``ts`` are far enough past ``t0`` to move the landmark.

    Parameters
    ----------
    ts
        The newest event time, epoch seconds.
    t0
        The current landmark.
    half_life_s
        Half-life, seconds.

    Returns
    -------
    bool
        True when ``(ts − t0) / half_life_s`` exceeds :data:`REBASE_EXPONENT`.
    """
    return (ts - t0) / half_life_s > REBASE_EXPONENT


def rebase_factor(old_t0: float, new_t0: float, half_life_s: float) -> float:
    """Return what to multiply stored scores by when the landmark moves.

    A score stored against ``old_t0`` holds ``Σ w · 2^((t − old_t0)/h)``; against
    ``new_t0`` it must hold ``Σ w · 2^((t − new_t0)/h)``, which is the old value times
    ``2^((old_t0 − new_t0)/h)``. Rankings are unchanged by a rebase.

    Parameters
    ----------
    old_t0, new_t0
        Landmarks before and after, epoch seconds.
    half_life_s
        Half-life, seconds.

    Returns
    -------
    float
        The factor (below 1 when the landmark moves forward).
    """
    return float(2.0 ** ((old_t0 - new_t0) / half_life_s))


def decayed_score(stored: float, now: float, t0: float, half_life_s: float) -> float:
    """Convert a stored forward-decayed score into its weight as of ``now``.

    The result is ``Σ w · 2^((t − now)/h)``: each event's weight halved once per
    half-life since it happened (an event at ``now`` counts fully). Useful for showing
    scores or thresholding; not needed for ranking.

    Parameters
    ----------
    stored
        The score as kept (relative to ``t0``).
    now
        The time to express it at, epoch seconds.
    t0
        The landmark of ``stored``.
    half_life_s
        Half-life, seconds.

    Returns
    -------
    float
        The decayed weight.
    """
    return float(stored * 2.0 ** ((t0 - now) / half_life_s))
