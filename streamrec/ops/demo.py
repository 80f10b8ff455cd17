"""``streamrec demo``: the embedded stack, ~30 s of shop traffic, a model, and a look.

Leaves the stack running so the API can be explored; ``streamrec down`` stops it. With
Tansu (the default broker) the demo says, as ``up`` does, that the log is in memory and
gone after ``down``; ``--broker kafka`` runs it on Apache Kafka, which keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

#: Longest the demo waits for a retrain that holds the lock (the worker's scheduled one,
#: which the demo's own traffic can start on a stack that is still up) before training.
BUSY_WAIT_S = 120.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec demo``."""
    from streamrec.arg_types import number, whole
    from streamrec.sim.simulate import MAX_DURATION_S, MAX_RATE, MAX_SHOP

    parser.add_argument("--duration", type=number(0, MAX_DURATION_S), default=30.0,
                        help="seconds of traffic (default: 30)")
    parser.add_argument("--rate", type=number(0, MAX_RATE), default=300.0,
                        help="events per second; 0 = unthrottled (default: 300)")
    parser.add_argument("--users", type=whole(1, MAX_SHOP), default=300,
                        help="simulated shoppers (default: 300)")
    parser.add_argument("--items", type=whole(1, MAX_SHOP), default=500,
                        help="catalog size (default: 500)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--broker", choices=("tansu", "kafka"), default=None,
                        help="embedded broker (default: STREAMREC_BROKER, else tansu)")


def _show(title: str, body: dict[str, Any], limit: int = 5) -> None:
    print(f"\n{title}  [source={body['source']}, model={body['model_version']}]")
    for item in body["items"][:limit]:
        price = f"{item['price']:.2f}" if item.get("price") is not None else "-"
        print(f"  {item['item_id']:<12} {item.get('name') or '':<32} {price:>8}  "
              f"score={item['score']:.3f}  ({item['reason']})")


def run(args: argparse.Namespace) -> int:
    """Start the stack, simulate, train, print recommendations and where to look."""
    from core.net import local_http_url
    from core.settings import get_settings
    from stream.retrain import NotEnoughData, RetrainBusy, train_and_publish
    from streamrec.sim.simulate import SimulationConfig, run_simulation
    from streamrec.stack import embedded as stack
    from streamrec.stack.infra import TANSU_WARNING

    settings = get_settings()
    if args.broker:
        settings = settings.model_copy(update={"broker": args.broker})
    state = stack.up(settings)
    broker = state.processes.get("kafka")
    in_memory = broker is not None and broker.role == "tansu"
    settings = get_settings.__wrapped__()  # re-read: `up` recorded the stack's addresses
    base = local_http_url(settings.api_host, settings.api_port)
    print(f"\nFeeding {args.duration:.0f} s of shop traffic at {args.rate:.0f} events/s ...")
    report = asyncio.run(run_simulation(SimulationConfig(
        api_url=base, rate=args.rate, duration_s=args.duration, users=args.users,
        items=args.items, seed=args.seed)))
    print(f"sent {report.events_sent} events ({report.events_accepted} accepted), "
          f"{report.identifies} identifies, {report.catalog_items} catalog items")
    time.sleep(1.0)
    print("\nTraining a model on the whole events topic ...")
    try:
        result = train_and_publish(settings, wait_live_s=30, busy_wait_s=BUSY_WAIT_S)
        print(f"model {result.version} live: {result.n_users} users x {result.n_items} items "
              f"from {result.n_events} events in {result.seconds:.1f} s")
    except (NotEnoughData, RetrainBusy) as exc:
        print(f"not trained: {exc}")
    with httpx.Client(base_url=base, timeout=5.0) as client:
        for user in report.users[:3]:
            _show(f"Recommendations for {user}",
                  client.get(f"/v1/users/{user}/recommendations", params={"n": 5}).json())
        _show("Recommendations for a new visitor",
              client.get("/v1/users/someone-new/recommendations", params={"n": 5}).json())
        popular = client.get("/v1/popular", params={"n": 5}).json()
        _show("Popular", popular)
        if popular["items"]:
            anchor = popular["items"][0]["item_id"]
            _show(f"Similar to {anchor}",
                  client.get(f"/v1/items/{anchor}/similar", params={"n": 5}).json())
        _show("Trending", client.get("/v1/trending", params={"n": 5}).json())
    print(f"""
The stack keeps running (state in {state_path(settings)}):
  API             {base}
  API docs        {base}/docs
  API metrics     {base}/metrics
  dashboard       {base}/dashboard  (an admin key; any text when auth is off)
  status          .venv/bin/streamrec status
  more traffic    .venv/bin/streamrec simulate --duration 60
  retrain         .venv/bin/streamrec train
  freshness       .venv/bin/streamrec bench freshness
  stop it all     .venv/bin/streamrec down
""")
    if in_memory:
        print(TANSU_WARNING)
    return 0


def state_path(settings: Any) -> str:
    """Where the stack's record lives, for the closing message."""
    return str(settings.state_file)
