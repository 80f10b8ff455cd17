"""``streamrec bench freshness``: how fast a shopper's action and a stock change show up.

Against a running stack (the embedded one by default), through the public API only:
1. personal freshness — post one event for a user and poll that user's list until it
   differs from before; the time from the 202 to the changed list;
2. stock freshness — mark an item that is on a user's list out of stock and poll until
   it is gone from that list, the popular and trending lists and the similar list of
   another listed item; then put the item back in stock with its catalog entry as it was
   (read first with ``GET /v1/admin/items/{id}``; also when the run is interrupted).
Prints p50/p99/max as JSON, then the command and the JSON's path; writes that JSON to
``--out``. Polling every 10 ms bounds the resolution.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from streamrec.arg_types import api_url
from streamrec.bench.options import finish, number, stops_on_sigterm, whole

if TYPE_CHECKING:
    from core.settings import Settings

POLL_S = 0.01
#: The most samples of either kind one run takes.
MAX_SAMPLES = 10_000


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
                       idle_s: float = 0.0, n: int = 20,
                       settle: Callable[[], object] | None = None,
                       quiet: Callable[[], bool] | None = None) -> list[float | None]:
    """Seconds from a 202 to the user's changed list, one sample per user; ``idle_s``
    of no traffic (from this client) before each (a lone event after idle), and before
    that ``settle`` (e.g. until no retrain, sweep or waiting list runs). With ``quiet``
    (the state ``settle`` waits for) the event goes only if it still holds after the
    idle seconds; otherwise (e.g. a scheduled retrain started meanwhile) settle and idle
    again. ``n``: the list's length read (1..100)."""
    samples: list[float | None] = []
    rng = np.random.default_rng(7)
    for user in users:
        url = f"/v1/users/{user}/recommendations?n={n}"
        while True:
            if settle is not None:
                settle()
            if idle_s:
                time.sleep(idle_s)
            if quiet is None or quiet():
                break
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


#: The catalog fields ``PUT /v1/items/{id}`` takes, as ``GET /v1/admin/items/{id}`` shows.
CATALOG_FIELDS = ("name", "price", "currency", "category", "properties")


def catalog_body(entry: dict[str, Any], *, in_stock: bool) -> dict[str, Any]:
    """The ``PUT /v1/items/{id}`` body that keeps an item's catalog entry as it is and sets
    its stock (a PUT is the item's full state: a bare ``in_stock`` would drop the rest)."""
    body = {k: entry[k] for k in CATALOG_FIELDS if entry.get(k) is not None}
    return {**body, "in_stock": in_stock}


def _probe_item(client: httpx.Client, listed: list[str], admin_key: str
                ) -> tuple[str, dict[str, Any]] | None:
    """The first listed item the catalog knows, in stock: its id and catalog entry."""
    for item in listed:
        resp = client.get(f"/v1/admin/items/{item}", headers=_headers(admin_key))
        resp.raise_for_status()
        entry: dict[str, Any] = resp.json()
        if entry.get("known") and entry.get("in_stock") and not entry.get("deleted"):
            return item, entry
    return None


def stock_freshness(client: httpx.Client, *, users: list[str], read_key: str,
                    admin_key: str, timeout_s: float, rounds: int) -> list[float | None]:
    """Seconds from a 202 on an out-of-stock update to the item vanishing everywhere;
    ``rounds`` samples, taking the users in turn. Each probed item gets its catalog entry
    back as it was, even when the run is interrupted."""
    samples: list[float | None] = []
    for k in range(rounds if users else 0):
        user = users[k % len(users)]
        listed = _ids(client.get(f"/v1/users/{user}/recommendations?n=10",
                                 headers=_headers(read_key)))
        probe = _probe_item(client, listed, admin_key)
        if probe is None:
            continue
        item, entry = probe
        urls = [f"/v1/users/{user}/recommendations?n=100", "/v1/popular?n=100",
                "/v1/trending?n=100", f"/v1/items/{listed[-1]}/similar?n=100"]

        def gone(i: str = item, us: list[str] = urls) -> bool:
            return all(i not in _ids(client.get(u, headers=_headers(read_key))) for u in us)

        try:
            client.put(f"/v1/items/{item}", json=catalog_body(entry, in_stock=False),
                       headers=_headers(admin_key)).raise_for_status()
            samples.append(_wait(gone, timeout_s))
        finally:
            client.put(f"/v1/items/{item}", json=catalog_body(entry, in_stock=True),
                       headers=_headers(admin_key)).raise_for_status()
    return samples


class OutsideProbe:
    """:func:`personal_freshness` from outside, one shopper every ``every_s`` seconds in a
    thread, while the caller does something else: the held rate checks the workers'
    freshness histogram against what a client sees through the API (from the 202, not
    from the API's arrival stamp, in polls of 10 ms). Each probe puts one of the popular
    items in the cart of the next of ``users`` (shoppers the caller's own traffic leaves
    alone, so only the probe changes their lists), the item rotating, and reads the
    whole list (``n=100``, a stored list's length): the first freshness level, which the
    workers' histogram times, may change a list below its first 20 only.

    A context manager; :meth:`summary` afterwards."""

    def __init__(self, base: str, *, users: list[str], read_key: str, tracking_key: str,
                 every_s: float = 0.5, timeout_s: float = 10.0) -> None:
        self.base, self.users = base, users
        self.read_key, self.tracking_key = read_key, tracking_key
        self.every_s, self.timeout_s = every_s, timeout_s
        self.samples: list[float | None] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outside-probe", daemon=True)

    def __enter__(self) -> OutsideProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 5)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5.0, trust_env=False) as client:
            try:
                items = _ids(client.get("/v1/popular?n=100", headers=_headers(self.read_key)))
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
                return
            turn = 0
            while self.users and items and not self._stop.wait(self.every_s):
                user, item = self.users[turn % len(self.users)], items[turn % len(items)]
                turn += 1
                try:
                    self.samples += personal_freshness(
                        client, users=[user], items=[item], read_key=self.read_key,
                        tracking_key=self.tracking_key, timeout_s=self.timeout_s, n=100)
                except httpx.HTTPError as exc:  # a refusal, a broken connection
                    self.errors.append(repr(exc))

    def summary(self) -> dict[str, Any]:
        """:func:`summarize` of the probes, with ``errors`` (probes a refusal or a broken
        connection ended) and the last one's reason."""
        out = summarize(self.samples)
        out["errors"] = len(self.errors)
        if self.errors:
            out["last_error"] = self.errors[-1][:200]
        return out


#: Most shoppers the held rate's outside probes take turns on, and how long a probe
#: waits for the changed list (a timeout is counted as one).
PROBE_USERS = 50
PROBE_TIMEOUT_S = 2.0


def held_probe(settings: Settings, base: str, shoppers: int, held: list[dict[str, Any]]
               ) -> OutsideProbe:
    """Probes of the burst bench's held rate from outside (:class:`OutsideProbe`, two a
    second) on its shoppers (``s0`` … ``s{shoppers - 1}``) with a stored personal list,
    which a probe's event changes at once (the first level; the post-retrain sweep lists
    only the most recently active ones). Those the held events leave alone when there
    are ten (a few dozen of 20,000 at 2,000 events/s for 60 s; then only the probe
    changes their lists), else the first shoppers with a list."""
    import redis

    from core.redis_keys import RedisKeys
    from core.settings import get_settings
    from core.stack_defaults import first_key

    busy = {event["user_id"] for event in held}
    ids = [f"s{i}" for i in range(shoppers)]
    keys = RedisKeys()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        def listed(candidates: list[str]) -> list[str]:
            pipe = client.pipeline(transaction=False)
            for user in candidates:
                pipe.exists(keys.user_recs(user))
            return [u for u, n in zip(candidates, pipe.execute(), strict=True) if n]

        users = listed([u for u in ids if u not in busy])[:PROBE_USERS]
        if len(users) < 10:
            users = listed(ids[:PROBE_USERS * 10])[:PROBE_USERS]
    finally:
        client.close()
    api = get_settings()
    return OutsideProbe(base, users=users, read_key=first_key(api.read_keys),
                        tracking_key=first_key(api.tracking_keys), every_s=0.5,
                        timeout_s=PROBE_TIMEOUT_S)


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
    parser.add_argument("--api-url", type=api_url, default=None,
                        help="API base URL (default: the stack's)")
    parser.add_argument("--users", type=whole(1, MAX_SAMPLES), default=30,
                        help="samples of personal freshness, one new user each (default: 30)")
    parser.add_argument("--stock-rounds", type=whole(0, MAX_SAMPLES), default=10,
                        help="samples of stock freshness, the users taking turns; 0 = skip "
                             "(default: 10)")
    parser.add_argument("--timeout", type=number(0, 600, allow_low=False), default=10.0,
                        help="seconds to wait for one sample's change before counting it "
                             "as a timeout (default: 10)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/freshness.json"),
                        help="the JSON result (default: bench-results/freshness.json)")


@stops_on_sigterm
def run(args: argparse.Namespace) -> int:
    """Measure both freshness kinds on a running stack and report."""
    from core.net import local_http_url
    from core.settings import get_settings
    from core.stack_defaults import first_key

    settings = get_settings()
    base = args.api_url or local_http_url(settings.api_host, settings.api_port)
    read_key = first_key(settings.read_keys)
    tracking_key = first_key(settings.tracking_keys)
    admin_key = first_key(settings.admin_keys)
    with httpx.Client(base_url=base, timeout=5.0) as client:
        popular = _ids(client.get("/v1/popular?n=100", headers=_headers(read_key)))
        users = [f"bench-fresh-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.users)]
        if not popular:
            print("no popular items yet: send traffic first (`streamrec simulate`)",
                  file=sys.stderr)
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
    last = finish(report, args.out)
    print(json.dumps(report, indent=2))
    print(last)
    return 0
