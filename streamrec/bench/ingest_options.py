"""The options of ``streamrec bench ingest`` (:mod:`streamrec.bench.ingest`), each
bounded (:mod:`streamrec.bench.options`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.limits import MAX_BATCH_EVENTS
from streamrec.arg_types import api_url
from streamrec.bench.options import MAX_ENTITIES, number, whole

TAOBAO = Path("../shared/data/taobao-userbehavior-window/"
              "UserBehavior_2017-11-26_0900-1110CST.csv")
#: The most events one phase of a run builds and posts (they are held in memory).
MAX_EVENTS = 2_000_000


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec bench ingest``."""
    parser.add_argument("--events", type=whole(1, MAX_EVENTS), default=100_000,
                        help="events for phase 1 (default: 100000)")
    parser.add_argument("--batch", type=whole(1, MAX_BATCH_EVENTS), default=MAX_BATCH_EVENTS,
                        help=f"events per request (default: {MAX_BATCH_EVENTS}, the API's most)")
    parser.add_argument("--concurrency", type=whole(1, 256), default=8,
                        help="requests in flight (default: 8)")
    parser.add_argument("--workers", type=whole(1, 64), default=None,
                        help="worker processes during the run: with --broker the fresh stack "
                             "starts this many; against a running stack, extra ones are "
                             "started here up to it (default: the stack's own; `up` starts "
                             "one per core, at most STREAMREC_TOPIC_PARTITIONS)")
    parser.add_argument("--rate", type=number(0, 1_000_000, allow_low=False), default=2000.0,
                        help="events/s of the held-rate phase (phase 4; phase 2 with --burst) "
                             "(default: 2000)")
    # 60 s: longer than the default coalesce_max_delay_s (30 s), so the held phase also
    # pays for the re-folds that come due while it runs (the steady state), not only for
    # the first freshness level.
    parser.add_argument("--hold", type=number(0, 3600, allow_low=False), default=60.0,
                        help="seconds of the held-rate phase; longer than "
                             "STREAMREC_COALESCE_MAX_DELAY_S so waiting re-folds come due "
                             "within it (default: 60)")
    parser.add_argument("--data", type=Path, default=TAOBAO,
                        help=f"Taobao CSV, if present (default: {TAOBAO})")
    parser.add_argument("--api-url", type=api_url, default=None,
                        help="API base URL (default: the stack's)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"),
                        help="the JSON result (default: bench-results/ingest.json)")
    parser.add_argument("--broker", choices=("tansu", "kafka", "both"), default=None,
                        help="start a fresh embedded stack of this broker (both: Tansu, then "
                             "Apache Kafka) for the run and compare them side by side; "
                             "default: the running stack")
    burst = parser.add_argument_group(
        "--burst", "issue 14's case instead: a burst of --events from --threads threads on a "
        "stack as `up` starts it (retrains on), freshness held, lone events after idle, the "
        "infrastructure ceiling, a retrain of --train-events (streamrec.bench.burst)")
    burst.add_argument("--burst", action="store_true", help="measure the burst case")
    burst.add_argument("--runs", type=whole(1, 100), default=1,
                       help="with --broker: fresh stacks per broker, medians reported "
                            "(default: 1)")
    burst.add_argument("--shoppers", type=whole(1, MAX_ENTITIES), default=20_000,
                       help="shoppers of the burst (default: 20000)")
    burst.add_argument("--items", type=whole(1, MAX_ENTITIES), default=20_000,
                       help="items of the burst (default: 20000)")
    burst.add_argument("--threads", type=whole(1, 256), default=4,
                       help="posting threads of the burst (default: 4)")
    burst.add_argument("--lone-samples", type=whole(1, 10_000), default=30,
                       help="lone events measured (default: 30)")
    burst.add_argument("--lone-idle", type=number(0, 3600), default=1.0,
                       help="seconds of no traffic before each lone event (default: 1)")
    burst.add_argument("--lone-timeout", type=number(0, 600, allow_low=False), default=10.0,
                       help="seconds a lone event's list may take to change before the "
                            "sample counts as a timeout (default: 10)")
    burst.add_argument("--skip-ceiling", action="store_true",
                       help="skip the infrastructure ceiling (it stops the stack's worker "
                            "for the phase, then starts it again)")
    burst.add_argument("--train-events", type=whole(0, MAX_ENTITIES), default=1_000_000,
                       help="interactions of the timed retrain; 0 = skip it (default: 1000000)")
    burst.add_argument("--train-shoppers", type=whole(1, MAX_ENTITIES), default=100_000,
                       help="shoppers of the timed retrain (default: 100000)")
