"""``streamrec bench freshness``: how fast a shopper's action and a stock change show up.

Against a running stack (the embedded one by default), through the public API only:
1. personal freshness — post one event for a user and poll that user's list until it
   differs from before; the time from the 202 to the changed list;
2. stock freshness — mark an item that is on a list out of stock and poll until it is gone
   from that list, the item's similar list and the popular list.
Prints p50/p99/max and writes JSON. Polling every 10 ms bounds the resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

POLL_S = 0.01


def _headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key} if key else {}


def _ids(resp: httpx.Response) -> list[str]:
    resp.raise_for_status()
    return [item["item_id"] for item in resp.json()["items"]]


def _wait(predicate: Any, timeout_s: float) -> float | None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if predicate():
            return time.perf_counter() - start
        time.sleep(POLL_S)
    return None


def personal_freshness(client: httpx.Client, *, users: list[str], items: list[str],
                       read_key: str, tracking_key: str, timeout_s: float,
                       idle_s: float = 0.0) -> list[float | None]:
    """Seconds from a 202 to the user's changed list, one sample per user; ``idle_s``
    of no traffic (from this client) before each (a lone event after idle)."""
    samples: list[float | None] = []
    rng = np.random.default_rng(7)
    for user in users:
        url = f"/v1/users/{user}/recommendations?n=20"
        if idle_s:
            time.sleep(idle_s)
        before = _ids(client.get(url, headers=_headers(read_key)))
        item = str(rng.choice(items))
        event = {"event_id": uuid.uuid4().hex, "type": "add_to_cart", "user_id": user,
                 "item_id": item}
        resp = client.post("/v1/events", json=event, headers=_headers(tracking_key))
        resp.raise_for_status()
        samples.append(_wait(
            lambda u=url, b=before: _ids(client.get(u, headers=_headers(read_key))) != b,
            timeout_s))
    return samples


def stock_freshness(client: httpx.Client, *, users: list[str], read_key: str,
                    admin_key: str, timeout_s: float, rounds: int) -> list[float | None]:
    """Seconds from a 202 on an out-of-stock update to the item vanishing everywhere."""
    samples: list[float | None] = []
    for user in users[:rounds]:
        listed = _ids(client.get(f"/v1/users/{user}/recommendations?n=10",
                                 headers=_headers(read_key)))
        if not listed:
            continue
        item = listed[0]
        urls = [f"/v1/users/{user}/recommendations?n=100", "/v1/popular?n=100",
                "/v1/trending?n=100", f"/v1/items/{listed[-1]}/similar?n=100"]
        client.put(f"/v1/items/{item}", json={"name": f"probe {item}", "in_stock": False},
                   headers=_headers(admin_key)).raise_for_status()

        def gone(i: str = item, us: list[str] = urls) -> bool:
            return all(i not in _ids(client.get(u, headers=_headers(read_key))) for u in us)

        samples.append(_wait(gone, timeout_s))
        client.put(f"/v1/items/{item}", json={"name": f"probe {item}", "in_stock": True},
                   headers=_headers(admin_key)).raise_for_status()
    return samples


def summarize(samples: list[float | None]) -> dict[str, Any]:
    """Median, p99 and max in milliseconds, and how many never changed in time."""
    ok = np.array([s for s in samples if s is not None], dtype=float) * 1000
    out: dict[str, Any] = {"samples": len(samples), "timeouts": len(samples) - len(ok)}
    if len(ok):
        out.update(p50_ms=round(float(np.percentile(ok, 50)), 1),
                   p99_ms=round(float(np.percentile(ok, 99)), 1),
                   max_ms=round(float(ok.max()), 1))
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec bench freshness``."""
    parser.add_argument("--api-url", default=None, help="API base URL (default: the stack's)")
    parser.add_argument("--users", type=int, default=30, help="samples of personal freshness")
    parser.add_argument("--stock-rounds", type=int, default=10, help="samples of stock freshness")
    parser.add_argument("--timeout", type=float, default=10.0, help="give up on a sample after")
    parser.add_argument("--out", type=Path, default=Path("bench-results/freshness.json"))


def _first(raw: str) -> str:
    return raw.split(",")[0].strip() if raw else ""


def run(args: argparse.Namespace) -> int:
    """Measure both freshness kinds on a running stack and report."""
    from core.settings import get_settings

    settings = get_settings()
    base = args.api_url or f"http://{settings.api_host}:{settings.api_port}"
    read_key = _first(os.environ.get("STREAMREC_READ_KEYS", ""))
    tracking_key = _first(os.environ.get("STREAMREC_TRACKING_KEYS", ""))
    admin_key = _first(os.environ.get("STREAMREC_ADMIN_KEYS", ""))
    with httpx.Client(base_url=base, timeout=5.0) as client:
        popular = _ids(client.get("/v1/popular?n=100", headers=_headers(read_key)))
        users = [f"bench-fresh-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.users)]
        if not popular:
            print("no popular items yet: run `streamrec simulate` first")
            return 1
        # Give each probe user a little history first so a model can fold them in.
        for user in users:
            client.post("/v1/events", headers=_headers(tracking_key), json={"events": [
                {"type": "view", "user_id": user, "item_id": it} for it in popular[:3]]})
        time.sleep(1.0)
        personal = personal_freshness(client, users=users, items=popular, read_key=read_key,
                                      tracking_key=tracking_key, timeout_s=args.timeout)
        stock = stock_freshness(client, users=users, read_key=read_key, admin_key=admin_key,
                                timeout_s=args.timeout, rounds=args.stock_rounds)
    report = {"api_url": base, "poll_interval_ms": POLL_S * 1000,
              "personal_list_change": summarize(personal),
              "out_of_stock_disappears": summarize(stock)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0
