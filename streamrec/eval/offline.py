"""``streamrec eval``: offline quality of every method on the shared datasets or any events.

One run compares popularity, item-kNN (``implicit`` cosine and BM25), full-retrain ALS,
the streaming worker's fold-in ALS and the production blend, per dataset, with the
dataset's protocol (``streamrec.eval.datasets``), and prints a markdown table; ``--json``
and ``--markdown`` also write them to files. ``--split validation`` scores the
validation side instead, and ``--tune als|blend`` runs the hyper-parameter searches on
it (never on the test side). See ``docs/quality.md``.

The worker's knobs (batching, history cap, retrain timer, list sizes) and the ALS
hyper-parameters come from :class:`core.settings.Settings`, so the evaluation runs
what production runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamrec.arg_types import number, whole
from streamrec.eval.datasets import (
    DEFAULT_DATA_DIR,
    LOADERS,
    Dataset,
    DatasetMissing,
    events_file,
    load,
    topic_events,
)
from streamrec.eval.running import dumps, evaluate_dataset

#: NDCG@10 share of full-retrain ALS the streaming fold-in must keep (acceptance).
STREAM_RATIO = 0.97

#: Most prequential checkpoints ``--checkpoints`` takes (each refits every batch baseline).
MAX_CHECKPOINTS = 1000

#: The ALS overrides and their bounds (``Settings.als_*``'s lower bounds, plus upper ones:
#: a bad value is one argparse line, never a traceback from the solver).
ALS_OPTIONS = {
    "factors": whole(2, 1024),
    "iterations": whole(1, 1000),
    "regularization": number(0.0, 1e6),
    "alpha": number(0.0, 1e6, allow_low=False),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` arguments to ``parser``."""
    parser.add_argument(
        "datasets", nargs="*", metavar="DATASET",
        help=f"shared datasets to evaluate: {', '.join(LOADERS)} (default: all three "
             "unless --events-file/--topic is given)")
    parser.add_argument("--events-file", type=Path, action="append", default=[],
                        metavar="PATH", help="JSON-lines events file to evaluate (repeatable)")
    parser.add_argument("--topic", action="store_true",
                        help="evaluate every event on the events topic")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"where the shared datasets are (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="score the test side (default) or the validation side")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: the six of the table; "
                        "also 'als_live', a diagnostic, see docs/quality.md)")
    parser.add_argument("--seed", type=whole(0, 2**32 - 1), default=0,
                        help="seed of splits and samples")
    parser.add_argument("--user-fraction", type=number(0.0, 1.0, allow_low=False),
                        default=None,
                        help="seeded share of users/sessions scored in prequential runs "
                             "(above 0 up to 1)")
    parser.add_argument("--checkpoints", type=whole(1, MAX_CHECKPOINTS), default=None,
                        help="override the number of prequential checkpoints "
                             f"(1 to {MAX_CHECKPOINTS:,})")
    parser.add_argument("--json", type=Path, dest="json_out", default=None,
                        help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the results table as markdown here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--tune", choices=("als", "blend"), default=None,
                        help="search ALS or blend hyper-parameters on the validation split")
    parser.add_argument(
        "--via-api", action="store_true",
        help="held-out run through the public API: post the events before the test period "
             "(POST /v1/events, time order), wait for the worker, `streamrec train`, GET "
             "each test user's top-10; starts the embedded stack unless an API answers at "
             "STREAMREC_API_HOST:STREAMREC_API_PORT (timed datasets only)")
    parser.add_argument("--max-users", type=whole(1, 10_000_000), default=None,
                        help="with --via-api: score a seeded sample of this many test users")
    for name, kind in ALS_OPTIONS.items():
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help=f"override Settings.als_{name}")


# ------------------------------------------------------------------------ configuration
def eval_settings(args: argparse.Namespace) -> Any:
    """The :class:`EvalSettings` mirroring production settings (plus CLI overrides)."""
    from core.limits import SESSION_ITEMS
    from core.settings import Settings
    from recommender.evaluation.methods import KNOWN_METHODS, METHODS, EvalSettings
    from recommender.evaluation.replay_model import AlsParams
    from recommender.evaluation.worker_sim import StreamConfig
    from stream.item_ops import abuse_policy
    from stream.processor import RECENT_ITEMS, SIMILAR_ITEMS

    s = Settings()
    stream = StreamConfig(
        batch_size=s.stream_batch_size, batch_within_s=s.stream_batch_within_s,
        history_max=s.history_max, cooc_window=s.cooc_window, list_size=s.list_size,
        trending_half_life_s=s.trending_half_life_s, retrain_interval_s=s.retrain_interval_s,
        retrain_min_events=s.retrain_min_events, recent_items=RECENT_ITEMS,
        session_items=SESSION_ITEMS, similar_items=SIMILAR_ITEMS, abuse=abuse_policy(s),
        foldin_candidates=s.foldin_candidates, blend_depth=s.blend_depth,
        retrain_growth=s.retrain_growth, retrain_min_gap_s=s.retrain_min_gap_s,
        sweep_entities=s.sweep_entities,
        sweep_per_batch=s.sweep_per_batch, sweep_window_s=s.sweep_window_s,
        bought_max=s.bought_max, identify_max_links=s.identify_max_links,
    )
    als = AlsParams(
        factors=args.factors or s.als_factors,
        iterations=args.iterations or s.als_iterations,
        cg_steps=s.als_cg_steps,
        regularization=(args.regularization if args.regularization is not None
                        else s.als_regularization),
        alpha=args.alpha if args.alpha is not None else s.als_alpha,
        seed=s.als_seed,
    )
    methods = tuple(METHODS)
    if args.methods is not None:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if not methods:  # was a run that printed an empty table and exited 0
            raise ValueError(f"--methods {args.methods!r} names no method; "
                             f"known: {', '.join(KNOWN_METHODS)}")
        unknown = set(methods) - set(KNOWN_METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; "
                             f"known: {', '.join(KNOWN_METHODS)}")
    return EvalSettings(stream=stream, als=als, methods=methods)


def _datasets(args: argparse.Namespace) -> list[Dataset]:
    names = list(args.datasets)
    if not names and not args.events_file and not args.topic:
        names = list(LOADERS)
    out = [load(name, args.data_dir) for name in names]
    out.extend(events_file(path) for path in args.events_file)
    if args.topic:
        from core.settings import get_settings

        out.append(topic_events(get_settings()))
    return out


def no_cases(protocol: str, split: str) -> str:
    """Why a run scored nothing: the data is too small (or too flat) for its protocol."""
    if protocol == "holdout":
        how = ("no user has 5 or more distinct items, so nothing could be held out "
               "(seeded leave-20 %-out per user" +
               (", then again on the training side)" if split == "validation" else ")"))
    else:
        how = (f"no event in the {split} period (prequential: the last 40 % of the time "
               "span for test, 20-60 % for validation) is an item new to a user or session "
               "with earlier events")
    return (f"no test cases on the {split} split: {how}; too little data to evaluate "
            "(docs/quality.md, Protocols)")


def acceptance(summary: dict[str, dict[str, Any]],
               per_case: dict[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """The two acceptance checks on one dataset's summary (when the methods ran).

    With ``per_case`` NDCG@10 values, each check also gets a paired bootstrap 95 %
    interval of the NDCG@10 difference and the one-sided hit counts.
    """
    from recommender.metrics import paired_difference

    out: dict[str, Any] = {}

    def paired(a: str, b: str) -> dict[str, Any]:
        if not per_case or a not in per_case or b not in per_case:
            return {}
        d = paired_difference(per_case[a], per_case[b])
        return {"ndcg_diff_ci95": [d.low, d.high], "cases_only_first": d.a_only,
                "cases_only_second": d.b_only}

    baselines = [m for m in ("popularity", "knn_cosine", "knn_bm25") if m in summary]
    if "blend" in summary and baselines:
        best = max(baselines, key=lambda m: summary[m]["ndcg@10"])
        out["best_baseline"] = best
        out["blend_vs_best_baseline"] = summary["blend"]["ndcg@10"] - summary[best]["ndcg@10"]
        out["blend_ge_best_baseline"] = (summary["blend"]["ndcg@10"]
                                         >= summary[best]["ndcg@10"])
        out["blend_vs_best_paired"] = paired("blend", best)
    if "als_stream" in summary and "als_full" in summary:
        full = summary["als_full"]["ndcg@10"]
        ratio = summary["als_stream"]["ndcg@10"] / full if full > 0 else math.nan
        out["stream_over_full"] = ratio
        out["stream_ge_97pct_full"] = bool(ratio >= STREAM_RATIO)
        out["stream_vs_full_paired"] = paired("als_stream", "als_full")
    if "als_live" in summary:  # the diagnostic split of the gap (see runner.DIAGNOSTIC)
        out["stream_vs_live_paired"] = paired("als_stream", "als_live")
        out["live_vs_full_paired"] = paired("als_live", "als_full")
    return out


LABELS = {
    "popularity": "popularity", "knn_cosine": "item-kNN cosine", "knn_bm25": "item-kNN BM25",
    "als_full": "ALS full retrain", "als_stream": "ALS streaming fold-in",
    "blend": "production blend", "als_live": "ALS live model, exact fold-in (diagnostic)",
}


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One markdown table: dataset × method rows, metric columns."""
    lines = [
        "| dataset | method | HR@10 | NDCG@10 | Recall@20 | coverage@10 | update s/event | cases |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        for method, row in res["methods"].items():
            cost = row.get("update_s_per_event")
            cost_s = f"{cost:.1e}" if cost is not None else "–"
            lines.append(
                f"| {name} | {LABELS.get(method, method)} | {row['hr@10']:.4f} | "
                f"{row['ndcg@10']:.4f} ± {row['ndcg@10_se']:.4f} | {row['recall@20']:.4f} | "
                f"{row['coverage@10']:.4f} | {cost_s} | {row['cases']} |")
    return "\n".join(lines)


def _settings_dict(settings: Any) -> dict[str, Any]:
    stream = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v)
              for k, v in vars(settings.stream).items()}
    return {"stream": stream, "als": asdict(settings.als),
            "blend": asdict(settings.blend), "knn_neighbours": settings.knn_neighbours,
            "depth": settings.depth, "methods": list(settings.methods)}


def ignored_options(args: argparse.Namespace) -> list[str]:
    """Notes naming the options given that the chosen run does not read (``--max-users``
    without ``--via-api``; the replay's options with it; what ``--tune`` does not read),
    so none is dropped silently."""
    if args.tune:
        unread = ["via_api", "max_users", "methods", "checkpoints", "markdown",
                  *(["user_fraction"] if args.tune == "als" else [])]
        given = [f"--{n.replace('_', '-')}" for n in unread
                 if getattr(args, n) not in (None, False)]
        return [f"{', '.join(given)}: --tune {args.tune} searches the validation split "
                "(results on stdout and in --json), ignored"] if given else []
    if not args.via_api:
        return ["--max-users: for --via-api only, ignored"] if args.max_users else []
    given = ([f"--split {args.split}"] if args.split != "test" else []) + [
        f"--{name.replace('_', '-')}"
        for name in ("methods", "user_fraction", "checkpoints", *ALS_OPTIONS)
        if getattr(args, name) is not None]
    if not given:
        return []
    named = ", ".join(given[:-1]) + " and " + given[-1] if len(given) > 1 else given[0]
    return [f"{named}: --via-api scores the test period with the stack's own settings "
            "(STREAMREC_* variables), ignored"]


def unwritable_outputs(args: argparse.Namespace) -> str | None:
    """Why ``--json``/``--markdown`` could not be written, or None: checked before a run
    of minutes, which otherwise ended in a traceback when it came to write them."""
    for flag, path in (("--json", args.json_out), ("--markdown", args.markdown)):
        if path is None:
            continue
        if path.is_dir():
            return f"{flag} {path}: is a directory"
        if not path.parent.is_dir():
            return f"{flag} {path}: no such directory {path.parent}"
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``streamrec eval``; returns the process exit code."""
    try:
        settings = eval_settings(args)
        problem = unwritable_outputs(args)
        if problem:
            raise ValueError(problem)
        datasets = _datasets(args)
    except (DatasetMissing, ValueError) as exc:
        print(f"streamrec eval: {exc}", file=sys.stderr)
        return 2
    for note in ignored_options(args):
        print(f"streamrec eval: note: {note}", file=sys.stderr)
    if args.tune:
        from streamrec.eval.tuning import tune

        return tune(args, settings, datasets)
    if args.via_api:
        return _via_api(args, datasets)
    results: dict[str, dict[str, Any]] = {}
    for ds in datasets:
        ignored = [f"--{name.replace('_', '-')}" for name in ("user_fraction", "checkpoints")
                   if getattr(args, name) is not None]
        if ds.plan.protocol == "holdout" and ignored:
            print(f"streamrec eval: note: {ds.name} has no time order (seeded holdout): "
                  f"{' and '.join(ignored)}: for timed data only, ignored here; "
                  "the quicker look is --methods knn_cosine,knn_bm25,als_full (popularity, "
                  "als_stream and blend replay the worker over every event)",
                  file=sys.stderr)
        result = evaluate_dataset(ds, settings, split=args.split, seed=args.seed,
                                  user_fraction=args.user_fraction,
                                  checkpoints=args.checkpoints, progress=not args.no_progress)
        if not result.info.get("cases"):
            print(f"streamrec eval: {ds.name}: {no_cases(ds.plan.protocol, args.split)}",
                  file=sys.stderr)
            return 2
        summary = result.summary()
        per_case = {name: tally.ndcg for name, tally in result.tallies.items()}
        results[ds.name] = {"source": ds.source, "notes": ds.notes, "info": result.info,
                            "catalog_size": result.catalog_size, "methods": summary,
                            "acceptance": acceptance(summary, per_case)}
    table = markdown_table(results)
    doc = {"split": args.split, "seed": args.seed, "settings": _settings_dict(settings),
           "datasets": results}
    if args.json_out:
        args.json_out.write_text(dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(table)
    for name, res in results.items():
        print(f"{name}: {dumps(res['acceptance'])}")
    return 0


def _via_api(args: argparse.Namespace, datasets: Sequence[Dataset]) -> int:
    """``--via-api``: each dataset's test period held out and served by the real stack."""
    from core.settings import get_settings
    from recommender.evaluation.events import prepare_events
    from streamrec.eval.via_api import markdown, run_via_api

    reports: dict[str, Any] = {}
    tables = []
    for ds in datasets:
        if ds.plan.protocol == "holdout" or ds.plan.test is None:
            print(f"streamrec eval: {ds.name} has no time order; --via-api needs timed events",
                  file=sys.stderr)
            return 2
        events = prepare_events(ds.events)
        try:
            report = run_via_api(events, ds.plan.test.start_ts, get_settings(),
                                 max_users=args.max_users, seed=args.seed,
                                 echo=lambda line: print(line, file=sys.stderr))
        except RuntimeError as exc:  # no API, a refused POST, no drain, a failed train
            print(f"streamrec eval: --via-api on {ds.name}: {exc}", file=sys.stderr)
            return 1
        reports[ds.name] = report
        tables.append(markdown(ds.name, report))
    table = "\n".join([tables[0], *(t.split("\n", 2)[2] for t in tables[1:])])
    if args.json_out:
        args.json_out.write_text(dumps({"via_api": reports}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m streamrec.eval.offline``) until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="streamrec eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
