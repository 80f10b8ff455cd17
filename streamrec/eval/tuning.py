"""``streamrec eval --tune als|blend``: hyper-parameter searches on the validation split
(never on the test side; see docs/quality.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from streamrec.eval.datasets import SHOP_EVENTS_PER_SECOND, Dataset
from streamrec.eval.running import dumps, evaluate_dataset


def tune(args: argparse.Namespace, settings: Any, datasets: Sequence[Dataset]) -> int:
    """Run the search ``args.tune`` names; the chosen parameters as JSON on stdout."""
    from recommender.evaluation.tuning import (
        ALS_SEARCH_START,
        BLEND_SEARCH_START,
        best_per_dataset,
        search_als,
        search_blend,
    )

    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    chosen: Any
    tried: list[tuple[Any, dict[str, float]]]
    if args.tune == "als":
        scorers = {ds.name: _als_scorer(ds, settings, args.seed) for ds in datasets}
        start = replace(ALS_SEARCH_START, **{
            name: getattr(args, name) for name in ("factors", "iterations", "regularization",
                                                    "alpha") if getattr(args, name) is not None})
        chosen, als_tried = search_als(scorers, start=start, log=log)
        tried = list(als_tried)
    else:
        captured = {}
        for ds in datasets:
            capture = replace(settings, capture=True, depth=50)
            result = evaluate_dataset(ds, capture, split="validation", seed=args.seed,
                                      user_fraction=args.user_fraction,
                                      progress=not args.no_progress)
            captured[ds.name] = result.captured
        chosen, blend_tried = search_blend(captured, start=BLEND_SEARCH_START, log=log)
        tried = list(blend_tried)
    doc = {
        "tune": args.tune, "chosen": asdict(chosen),
        "best_per_dataset": best_per_dataset(tried),
        "tried": [{"params": asdict(p), "ndcg@10": s} for p, s in tried],
    }
    if args.json_out:
        args.json_out.write_text(dumps(doc, indent=2) + "\n")
    print(dumps({"chosen": doc["chosen"], "scores": dict(tried)[chosen]}))
    return 0


def _als_scorer(ds: Dataset, settings: Any, seed: int) -> Callable[[Any], float]:
    """Validation NDCG@10 of full-retrain ALS with given parameters (one fit per period)."""
    from recommender.evaluation.events import prepare_events
    from recommender.evaluation.protocols import holdout_split, synthetic_clock
    from recommender.evaluation.runner import run_holdout, run_prequential

    only = replace(settings, methods=("als_full",))
    if ds.plan.protocol == "holdout":
        events = prepare_events(ds.events, sort=False)
        outer = holdout_split(events, fraction=ds.plan.holdout, seed=seed)
        inner = holdout_split(outer.train, fraction=ds.plan.holdout, seed=seed + 1)
        train = synthetic_clock(inner.train, seed=seed, events_per_second=SHOP_EVENTS_PER_SECOND)

        def score_holdout(params: Any) -> float:
            result = run_holdout(train, inner.test, settings=replace(only, als=params),
                                 events_per_second=SHOP_EVENTS_PER_SECOND)
            return float(result.summary()["als_full"]["ndcg@10"])

        return score_holdout
    prepared = prepare_events(ds.events)
    period = ds.plan.validation
    assert period is not None

    def score_prequential(params: Any) -> float:
        # One fit at the start of the validation period, scored on all of it: enough to
        # rank hyper-parameters, and affordable for a grid.
        result = run_prequential(prepared, start_ts=period.start_ts, end_ts=period.end_ts,
                                 checkpoints=[period.start_ts],
                                 window_s=period.end_ts - period.start_ts,
                                 settings=replace(only, als=params))
        return float(result.summary()["als_full"]["ndcg@10"])

    return score_prequential
