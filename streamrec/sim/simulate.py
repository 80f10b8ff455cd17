"""Realistic synthetic shop traffic, sent through the public HTTP API (``streamrec simulate``).

Three parts, so the shop model can be tested without any server:

* :class:`ShopModel` (:mod:`streamrec.sim.shop_model`) is pure and seeded. It holds a
  catalog (readable names, log-normal prices, ~20 categories, a share out of stock),
  shoppers with 1–3 preferred categories and Zipf item popularity, and produces
  interleaved shopping sessions as :data:`Action` values: tracking events, identify
  calls of anonymous visitors who log in, and stock changes.
* :func:`run_simulation` (:mod:`streamrec.sim.runner`) posts the catalog, then paces the
  model's actions against a running API through the Python client
  (:mod:`streamrec.client`: batching, event ids made at track time, one retry rule).
* this module: the command line, and the names callers import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from core.limits import MAX_BATCH_EVENTS
from core.net import local_http_url
from core.stack_defaults import first_key
from streamrec.arg_types import number, whole
from streamrec.sim.config import (  # noqa: F401 - re-exported for callers and tests
    SimulationConfig,
    SimulationError,
    SimulationReport,
)
from streamrec.sim.runner import run_simulation
from streamrec.sim.shop_model import (  # noqa: F401 - re-exported for callers and tests
    ADJECTIVES,
    CATEGORY_NOUNS,
    CHANNELS,
    Action,
    Identify,
    ShopItem,
    ShopModel,
    Shopper,
    StockChange,
    Track,
    zipf_weights,
)

# --- command line -------------------------------------------------------------------------
#: Most shoppers or catalog items one run models (the shop model takes ~1.6 s and ~90 MB
#: at 100,000 of each; 1,000,000 took 34 s and 830 MB before the first event).
MAX_SHOP = 100_000
#: Longest run, and most events one run sends.
MAX_DURATION_S = 7 * 86_400.0
MAX_EVENTS = 1_000_000_000
#: Highest rate asked for (events/s; 0 = unthrottled).
MAX_RATE = 1_000_000.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streamrec simulate`` options to ``parser``."""
    defaults = SimulationConfig()
    parser.add_argument(
        "--api-url",
        default=None,
        help=f"base URL of the API (default: from STREAMREC_API_HOST/PORT, {defaults.api_url})",
    )
    parser.add_argument(
        "--rate", type=number(0, MAX_RATE), default=defaults.rate,
        help=f"events per second; 0 = unthrottled (default: {defaults.rate:g})"
    )
    parser.add_argument(
        "--duration", type=number(0, MAX_DURATION_S), default=defaults.duration_s,
        help=f"seconds to run (default: {defaults.duration_s:g})"
    )
    parser.add_argument(
        "--events", type=whole(0, MAX_EVENTS), default=None,
        help="send this many events (replaces --duration)"
    )
    parser.add_argument("--users", type=whole(1, MAX_SHOP), default=defaults.users,
                        help=f"known shoppers (default: {defaults.users})")
    parser.add_argument("--items", type=whole(1, MAX_SHOP), default=defaults.items,
                        help=f"catalog size (default: {defaults.items})")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed,
        help="seed of the shop and its traffic (event ids are new on every run)",
    )
    parser.add_argument(
        "--batch-size", type=whole(1, MAX_BATCH_EVENTS), default=defaults.batch_size,
        help=f"events per request (≤{MAX_BATCH_EVENTS}; default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--anonymous-share",
        type=number(0, 1),
        default=defaults.anonymous_share,
        help=f"share of sessions by anonymous visitors (default: {defaults.anonymous_share})",
    )
    parser.add_argument(
        "--out-of-stock",
        type=number(0, 1),
        default=defaults.out_of_stock,
        help=f"share of the catalog out of stock (default: {defaults.out_of_stock})",
    )
    parser.add_argument(
        "--no-catalog", action="store_true", help="skip catalog and stock writes (admin)"
    )
    parser.add_argument(
        "--tracking-key", default=None, help="default: first of STREAMREC_TRACKING_KEYS"
    )
    parser.add_argument("--admin-key", default=None, help="default: first of STREAMREC_ADMIN_KEYS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    exp = parser.add_argument_group(
        "experiments", "--experiment ID sends --users visitors, each a new shopper who "
        "sees one home list and buys with probability base-rate × (1 + (list-effect - 1) × "
        "share of the shown items in their categories); then prints the experiment's "
        "report once it shows what was sent (docs/experiments.md)")
    exp.add_argument("--experiment", default=None, metavar="ID",
                     help="simulate visitors of this (defined, running) experiment")
    exp.add_argument("--base-rate", type=number(0, 1), default=0.1,
                     help="purchase probability without a list (default 0.1)")
    exp.add_argument("--list-effect", type=number(0, 1000, allow_low=False), default=2.0,
                     help="purchase probability factor of a fully relevant list (default 2)")
    exp.add_argument("--ignore-lists", action="store_true",
                     help="shoppers ignore what they are shown (no true lift)")
    exp.add_argument("--srm-loss", type=number(0, 1), default=0.0,
                     help="share of the shoppers outside the control lost before their list "
                          "(a broken assignment: the SRM test should flag it)")
    exp.add_argument("--wait", type=number(0, 3600), default=60.0,
                     help="seconds to wait for the report to catch up (default 60)")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Build the config from parsed options; what is not given comes from the settings.

    Keys default to the first of ``STREAMREC_TRACKING_KEYS`` / ``STREAMREC_ADMIN_KEYS``,
    the API URL to ``STREAMREC_API_HOST``/``STREAMREC_API_PORT`` (a wildcard bind
    address becomes 127.0.0.1).
    """
    from core.settings import get_settings

    settings = get_settings()
    tracking_key = getattr(args, "tracking_key", None)
    admin_key = getattr(args, "admin_key", None)
    api_url = getattr(args, "api_url", None)
    if tracking_key is None:
        tracking_key = first_key(settings.tracking_keys)
    if admin_key is None:
        admin_key = first_key(settings.admin_keys)
    if api_url is None:
        api_url = local_http_url(settings.api_host, settings.api_port)
    return SimulationConfig(
        api_url=api_url,
        rate=args.rate,
        duration_s=args.duration,
        max_events=args.events,
        users=args.users,
        items=args.items,
        out_of_stock=args.out_of_stock,
        anonymous_share=args.anonymous_share,
        batch_size=args.batch_size,
        seed=args.seed,
        tracking_key=tracking_key,
        admin_key=admin_key,
        catalog=not args.no_catalog,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    """``streamrec simulate``: 0 when every event was accepted, 1 when some were not,
    2 when the run could not go on (unreachable API, refused key, bad option)."""
    if getattr(args, "experiment", None):
        return run_experiment(args)
    try:
        config = config_from_args(args)
        report = asyncio.run(run_simulation(config))
    except (SimulationError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def run_experiment(args: argparse.Namespace) -> int:
    """``streamrec simulate --experiment ID``: 0 when the report shows exactly what was
    sent, 1 when it does not (yet), 2 when the run could not go on."""
    from streamrec.client import StreamrecError
    from streamrec.ops.experiments import format_report
    from streamrec.sim.experiment import ExperimentSimConfig, run_experiment_simulation

    try:
        config = config_from_args(args)
        exp = ExperimentSimConfig(args.experiment, visitors=args.users,
                                  base_rate=args.base_rate, list_effect=args.list_effect,
                                  ignore_lists=args.ignore_lists, srm_loss=args.srm_loss,
                                  anonymous_share=args.anonymous_share)
        result = asyncio.run(run_experiment_simulation(config, exp, wait_s=args.wait))
    except (StreamrecError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        truth = result["truth"]
        print(f"{truth['visitors']} visitors ({truth['lost']} lost before their list)")
        print(format_report(result["report"]))
        for problem in result["differences"]:
            print(f"differs from what was sent: {problem}")
    return 0 if not result["differences"] else 1
