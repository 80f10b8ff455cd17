"""Running one dataset's evaluation protocol (holdout or prequential) with a progress bar,
shared by ``streamrec eval`` (:mod:`streamrec.eval.offline`) and its hyper-parameter
searches (:mod:`streamrec.eval.tuning`)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from streamrec.eval.datasets import SHOP_EVENTS_PER_SECOND, Dataset, Period


class _Bar:
    """A tqdm bar, or nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from streamrec.progress import progress_bar

            self._bar = progress_bar(total=total, desc=desc, unit="ev", unit_scale=True)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def evaluate_dataset(ds: Dataset, settings: Any, *, split: str, seed: int = 0,
                     user_fraction: float | None = None, checkpoints: int | None = None,
                     progress: bool = True) -> Any:
    """Run one dataset's protocol on ``split``; returns the :class:`RunResult`."""
    from recommender.evaluation.events import prepare_events
    from recommender.evaluation.protocols import checkpoints as checkpoint_times
    from recommender.evaluation.protocols import holdout_split, synthetic_clock
    from recommender.evaluation.runner import run_holdout, run_prequential, stable_keep

    plan = ds.plan
    started = time.perf_counter()
    if plan.protocol == "holdout":
        events = prepare_events(ds.events, sort=False)
        split_ = holdout_split(events, fraction=plan.holdout, seed=seed)
        if split == "validation":
            split_ = holdout_split(split_.train, fraction=plan.holdout, seed=seed + 1)
        train = synthetic_clock(split_.train, seed=seed, events_per_second=SHOP_EVENTS_PER_SECOND)
        bar = _Bar(len(train), f"{ds.name} ({split})", progress)
        try:
            result = run_holdout(train, split_.test, settings=settings,
                                 events_per_second=SHOP_EVENTS_PER_SECOND, progress=bar.update)
        finally:
            bar.close()
    else:
        events = prepare_events(ds.events)
        period = plan.validation if split == "validation" else plan.test
        assert period is not None
        if checkpoints:
            period = Period(period.start_ts, period.end_ts, checkpoints,
                            min(period.window_s, (period.end_ts - period.start_ts) / checkpoints))
        marks = checkpoint_times(period.start_ts, period.end_ts, count=period.checkpoints)
        fraction = user_fraction if user_fraction is not None else plan.user_fraction
        total = sum(1 for e in events if e["ts"] < period.end_ts)
        bar = _Bar(total, f"{ds.name} ({split})", progress)
        try:
            result = run_prequential(
                events, start_ts=period.start_ts, end_ts=period.end_ts, checkpoints=marks,
                window_s=period.window_s, settings=settings,
                keep=stable_keep(seed, fraction), progress=bar.update)
        finally:
            bar.close()
        result.info["user_fraction"] = fraction
    result.info["seconds"] = round(time.perf_counter() - started, 1)
    result.info["split"] = split
    result.info["dataset_protocol"] = plan.protocol
    return result


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars as numbers (NaN/inf as null), else text."""
    if hasattr(value, "item"):
        return finite(value.item())
    return str(value)


def finite(value: Any) -> Any:
    """``value`` with every NaN/inf float, however deeply nested, replaced by ``None``.

    ``json.dumps`` never calls its ``default`` for a float, so a ratio over a zero NDCG
    (``stream_over_full``) was written as ``NaN``, which no JSON parser but Python's reads.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON of an evaluation report: NaN/inf as ``null``, numpy scalars as numbers."""
    return json.dumps(finite(value), default=json_default, allow_nan=False, **kwargs)
