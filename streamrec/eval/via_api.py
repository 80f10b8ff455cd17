"""``streamrec eval --via-api``: a held-out dataset evaluated end to end through the API.

Offline evaluation replays the worker in memory; this checks what a deployment actually
serves. The dataset is split in time: every event before the split is posted through
``POST /v1/events`` in time order (batches), the pipeline is left to drain (consumer lag
0, ``streamrec status``), ``streamrec train`` publishes a model and waits until the worker
serves it, the workers finish their refresh sweep (the retrain's plain lists of recently
active users replaced by blends), and then each test user's top-10 is read with
``GET /v1/users/{id}/recommendations``. A test user is one with events before the split
and items after it that it had not touched before; those items are its relevant set
(HR@10, NDCG@10). Popularity, item-kNN (cosine) and ALS are computed in-process on the
same training events as references: the ALS row is what the retrain alone would give,
so the gap to the API row is what serving adds or loses.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.limits import MAX_BATCH_EVENTS
from core.net import local_http_url
from core.settings import Settings, env_for_child
from streamrec.client.retry import RetryPolicy

Echo = Callable[[str], None]

#: Events per ``POST /v1/events``: as many as the API accepts by default.
POST_BATCH = MAX_BATCH_EVENTS
#: When a refused batch is posted again and how long to wait: the Python client's rule.
POST_RETRY = RetryPolicy()


@dataclass
class HeldOut:
    """A time split: the training events (time order) and each test user's new items."""

    train: list[dict[str, Any]]
    relevant: dict[str, set[str]]
    known: dict[str, set[str]] = field(default_factory=dict)


def time_split(events: Sequence[dict[str, Any]], split_ts: float) -> HeldOut:
    """Split prepared events (``entity`` resolved, time order) at ``split_ts``.

    Test users are entities with training events; their relevant items are the items they
    interact with at or after ``split_ts`` (positive event types only) and never before.
    """
    from recommender.weights import EVENT_WEIGHTS

    train = [e for e in events if e["ts"] < split_ts]
    known: dict[str, set[str]] = {}
    for e in train:
        if EVENT_WEIGHTS.get(str(e["type"]), 0.0) > 0.0:
            known.setdefault(str(e["entity"]), set()).add(str(e["item_id"]))
    relevant: dict[str, set[str]] = {}
    for e in events:
        if e["ts"] < split_ts or EVENT_WEIGHTS.get(str(e["type"]), 0.0) <= 0.0:
            continue
        entity, item = str(e["entity"]), str(e["item_id"])
        if entity in known and item not in known[entity]:
            relevant.setdefault(entity, set()).add(item)
    return HeldOut(train, relevant, known)


def _key(keys: frozenset[str]) -> dict[str, str]:
    return {"X-API-Key": sorted(keys)[0]} if keys else {}


def _api_ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _base_url(settings: Settings) -> str:
    return local_http_url(settings.api_host, settings.api_port)


def ensure_stack(settings: Settings, *, start: bool, echo: Echo,
                 timeout_s: float = 60.0) -> tuple[Settings, str]:
    """``(settings, API base URL)`` of a ready stack: the API at ``settings``' address, or
    the embedded stack (``streamrec up``) started if none answers and ``start`` is set.

    Without ``start``, waits up to ``timeout_s`` for an API that is still starting.
    """
    base = _base_url(settings)
    with httpx.Client(base_url=base, timeout=5) as client:
        ready = _api_ready(client)
    if start and not ready:
        from streamrec.stack.embedded import up

        echo("starting the embedded stack (streamrec up)")
        state = up(settings)
        settings = settings.model_copy(update={"kafka_bootstrap": state.kafka_bootstrap,
                                               "redis_url": state.redis_url})
        base = state.api_url or base
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, timeout=5) as client:
        while not _api_ready(client):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no API ready at {base} within {timeout_s:.0f} s "
                                   "(run `streamrec up`)")
            time.sleep(0.2)
    return settings, base


def post_events(client: httpx.Client, settings: Settings, events: Sequence[dict[str, Any]],
                progress: Callable[[int], None] | None = None) -> int:
    """POST the events in order, in batches; returns how many were accepted."""
    from streamrec.ops.load import to_tracking

    headers = _key(settings.tracking_key_set)
    sent = 0
    for start in range(0, len(events), POST_BATCH):
        chunk = [to_tracking({k: v for k, v in e.items() if k != "entity"})
                 for e in events[start:start + POST_BATCH]]
        for attempt in itertools.count():
            resp = client.post("/v1/events", json={"events": chunk}, headers=headers)
            wait = None if resp.is_success else POST_RETRY.next_wait(
                attempt, resp.status_code, resp.headers.get("Retry-After"))
            if wait is None:
                break
            time.sleep(wait)
        if resp.status_code not in (200, 202):
            raise RuntimeError(f"POST /v1/events: {resp.status_code} {resp.text[:200]}")
        sent += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return sent


def _poll_status(settings: Settings, done: Callable[[dict[str, Any]], bool], *,
                 timeout_s: float, what: str) -> float:
    """Read ``streamrec status --json`` once a second until ``done`` holds for it;
    returns the seconds waited, raises after ``timeout_s`` (``what`` did not happen)."""
    from streamrec.ops.status import collect_status

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if done(collect_status(settings)):
            return time.monotonic() - started
        time.sleep(1.0)
    raise RuntimeError(f"{what} within {timeout_s:.0f} s")


def wait_drained(settings: Settings, posted: int, *, timeout_s: float = 600.0) -> None:
    """Wait until the worker consumed everything (lag 0, as ``streamrec status --json``
    reports it) and its processed counter stopped moving."""
    last = -1

    def drained(status: dict[str, Any]) -> bool:
        nonlocal last
        processed = int(status.get("processed") or 0)
        still = processed == last
        last = processed
        return not status["errors"] and status["lag"] == 0 and processed >= posted and still

    _poll_status(settings, drained, timeout_s=timeout_s, what="the pipeline did not drain")


def train(settings: Settings, *, timeout_s: float = 120.0, busy_wait_s: float = 900.0) -> str:
    """Run ``streamrec train`` (waits until the worker serves the new model); retried
    while a scheduled retrain holds the training lock."""
    deadline = time.monotonic() + busy_wait_s
    while True:
        proc = subprocess.run(
            [sys.executable, "-m", "streamrec.cli", "train", "--timeout", str(timeout_s)],
            env=env_for_child(settings), capture_output=True, text=True,
            timeout=timeout_s + busy_wait_s)
        if proc.returncode == 0:
            return proc.stdout.strip()
        if "another retrain is running" not in proc.stderr or time.monotonic() > deadline:
            raise RuntimeError(f"streamrec train failed: {proc.stderr.strip()[-500:]}")
        time.sleep(2.0)


def wait_swept(settings: Settings, *, timeout_s: float = 300.0) -> float:
    """Wait until every live worker serves the current model and has finished its refresh
    sweep (the blended lists of recently active users; see docs/architecture.md), so
    the lists read next are what a shopper would see a little after a retrain.

    Returns the seconds waited.
    """
    from streamrec.ops.status import lists_settled

    def swept(status: dict[str, Any]) -> bool:
        return bool(status.get("model_version")) and lists_settled(status)

    return _poll_status(settings, swept, timeout_s=timeout_s,
                        what="the workers did not finish the refresh sweep")


def fetch_lists(client: httpx.Client, settings: Settings, users: Sequence[str], n: int,
                progress: Callable[[int], None] | None = None) -> dict[str, list[str]]:
    """Each user's top-``n`` from ``GET /v1/users/{id}/recommendations``."""
    from streamrec.client.wire import segment

    headers = _key(settings.read_key_set)
    out: dict[str, list[str]] = {}
    for user in users:  # an id is any text: "a/b" or "x?y" is one encoded path segment
        resp = client.get(f"/v1/users/{segment(user)}/recommendations", params={"n": n},
                          headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"GET recommendations for {user}: {resp.status_code}")
        out[user] = [i["item_id"] for i in resp.json()["items"]]
        if progress is not None:
            progress(1)
    return out


def reference_lists(held: HeldOut, users: Sequence[str], n: int,
                    settings: Settings) -> dict[str, dict[str, list[str]]]:
    """Popularity, item-kNN (cosine) and ALS top-``n`` computed in-process on the
    training events (the same code the offline evaluation uses)."""
    from recommender.evaluation.baselines import Profiles, als_recommend, filtered, fit_knn
    from recommender.evaluation.replay_model import AlsParams, fit_model
    from recommender.interactions import build_matrix
    from recommender.weights import popularity_weight

    profiles = Profiles()
    counts: dict[str, float] = {}
    for e in held.train:
        profiles.add(e)
        w = popularity_weight(str(e["type"]), e.get("quantity"))
        if w > 0:
            counts[str(e["item_id"])] = counts.get(str(e["item_id"]), 0.0) + w
    popular = sorted(counts.items(), key=lambda p: -p[1])
    data = build_matrix(held.train)
    out: dict[str, dict[str, list[str]]] = {}
    out["popularity"] = {u: filtered(popular, profiles.known(u), n) for u in users}
    knn = fit_knn(data, "cosine", neighbours=100)
    if knn is not None:
        out["item-kNN cosine"] = dict(zip(users, knn.recommend(profiles, users, n),
                                          strict=True))
    params = AlsParams(factors=settings.als_factors, iterations=settings.als_iterations,
                       cg_steps=settings.als_cg_steps,
                       regularization=settings.als_regularization, alpha=settings.als_alpha,
                       seed=settings.als_seed)
    model = fit_model(data, params)
    if model is not None:
        out["ALS (in-process retrain)"] = dict(
            zip(users, als_recommend(model.model, profiles, users, n), strict=True))
    return out


def score(lists: dict[str, list[str]], relevant: dict[str, set[str]],
          k: int = 10) -> dict[str, float]:
    """Mean HR@k and NDCG@k (± standard error) over the test users."""
    from recommender.metrics import hit_rate, ndcg, summarize

    users = sorted(relevant)
    hr = summarize([hit_rate(lists.get(u, []), relevant[u], k) for u in users])
    nd = summarize([ndcg(lists.get(u, []), relevant[u], k) for u in users])
    return {f"hr@{k}": hr.mean, f"ndcg@{k}": nd.mean, f"ndcg@{k}_se": nd.stderr,
            "users": hr.n}


def run_via_api(events: Sequence[dict[str, Any]], split_ts: float, settings: Settings, *,
                start_stack: bool = True, max_users: int | None = None, seed: int = 0,
                echo: Echo = print) -> dict[str, Any]:
    """The whole procedure (see the module notes); returns scores per method and facts."""
    import random

    held = time_split(events, split_ts)
    users = sorted(held.relevant)
    if max_users is not None and len(users) > max_users:
        users = sorted(random.Random(seed).sample(users, max_users))
    relevant = {u: held.relevant[u] for u in users}
    facts: dict[str, Any] = {"train_events": len(held.train), "test_users": len(users)}
    settings, base = ensure_stack(settings, start=start_stack, echo=echo)
    with httpx.Client(base_url=base, timeout=30) as client:
        started = time.perf_counter()
        echo(f"posting {len(held.train)} training events in time order")
        post_events(client, settings, held.train)
        facts["post_s"] = round(time.perf_counter() - started, 1)
        wait_drained(settings, len(held.train))
        facts["drained_s"] = round(time.perf_counter() - started, 1)
        echo("pipeline drained; streamrec train")
        facts["train"] = train(settings)
        facts["trained_s"] = round(time.perf_counter() - started, 1)
        facts["sweep_wait_s"] = round(wait_swept(settings), 1)
        echo(f"reading top-10 of {len(users)} test users through the API")
        api_lists = fetch_lists(client, settings, users, 10)
    results = {"streamrec API (served lists)": score(api_lists, relevant)}
    for name, lists in reference_lists(held, users, 10, settings).items():
        results[name] = score(lists, relevant)
    return {"results": results, "info": facts}


def markdown(name: str, report: dict[str, Any]) -> str:
    """The results as a markdown table."""
    lines = ["| dataset | method | HR@10 | NDCG@10 | users |", "|---|---|---:|---:|---:|"]
    for method, r in report["results"].items():
        lines.append(f"| {name} | {method} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} ± "
                     f"{r['ndcg@10_se']:.4f} | {r['users']} |")
    return "\n".join(lines)
