"""The operator dashboard end to end: headless Chromium (Debian's, `make browser`) on
``/dashboard`` of a stack started with ``streamrec up`` (Tansu, redis-server, a worker and
the API as processes) while ``streamrec simulate`` sends shop traffic.

The page (tests/browser/dashboard.mjs) refuses a wrong key, signs in with the admin key
(kept in session storage, in no URL), sees the numbers move, draws its charts, looks up an
item and a user, and is screenshotted at 1280x800 and 390x844 (no sideways scrolling on
the phone). Then the traffic stops; once the pipeline has drained, every number the page
shows is compared with ``streamrec status --json``: they must be equal, since both come
from ``core.pipeline_status``. No console error is allowed, and the page asks the API
nothing but its own files, the one data request per refresh and the lookups.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from kafka import KafkaProducer

from recommender.experiments import assign_variant
from streamrec.client import Client
from tests.browser.harness import (
    HERE,
    Tools,
    cli,
    driver,
    driver_result,
    find_tools,
    stack_up,
)
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SCREENSHOTS = HERE / "screenshots-dashboard"
EXPERIMENT = "recs-vs-holdout"
TRACK, READ, ADMIN = "dash-track-key-0123", "dash-read-key-01234", "dash-admin-key-0123"
USER = "dash-user"
#: An entity the experiment's hash puts in its holdout (the control).
HOLDOUT_USER = next(u for u in (f"dash-holdout-{i}" for i in range(1000))
                    if assign_variant(EXPERIMENT, u, ("control", "treatment"), (0.5, 0.5))
                    == "control")
SIM = ("--items", "120", "--users", "60", "--quiet")
#: Paths the page may request (its files, its data, the lookups' endpoints).
ALLOWED_PATHS = ("/dashboard", "/v1/admin/dashboard", "/v1/admin/items/", "/v1/admin/users/",
                 "/v1/admin/preview", "/v1/items/")


@dataclass
class Stack:
    cwd: Path
    env: dict[str, str]
    api: str
    kafka: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = cli(self.cwd, self.env, *args)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    def status(self) -> dict[str, Any]:
        """`streamrec status --json`, parsed."""
        found: dict[str, Any] = json.loads(self.cli("status", "--json").stdout)
        return found


@pytest.fixture(scope="module")
def tools() -> Tools:
    return find_tools(HERE)


@pytest.fixture(scope="module")
def stack(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cwd = tmp_path_factory.mktemp("dashboard")
    with stack_up(cwd, STREAMREC_RETRAIN_INTERVAL_S="0", STREAMREC_RETRAIN_GROWTH="0",
                  STREAMREC_TRACKING_KEYS=TRACK, STREAMREC_READ_KEYS=READ,
                  STREAMREC_ADMIN_KEYS=ADMIN) as (env, state):
        yield Stack(cwd, env, state["api_url"].rstrip("/"), state["kafka_bootstrap"])


def _comparable(status: dict[str, Any]) -> tuple[Any, ...]:
    """The status fields that stand still once the pipeline has drained."""
    fresh = {k: v for k, v in (status["freshness"] or {}).items() if k not in ("age_s", "stale")}
    return (status["processed"], status["lag"], status["dead_lettered"], fresh,
            status["events_per_s"],
            status["model_version"], status["group"]["partitions"],
            {name: t["total"] for name, t in status["topics"].items()})


def _drained(stack: Stack, comparable: Any = _comparable) -> dict[str, Any]:
    """The status once lag is 0 and nothing changed for longer than a heartbeat period
    (the worker publishes freshness with its heartbeat, up to 2 s after the last batch).
    All of :func:`_comparable` by default: its ``events_per_s`` reaches 0 only once the
    worker's rate window (10 s, ``stream.state.RATE_WINDOW_S``) has passed the traffic."""
    last: dict[str, Any] = {"seen": None, "since": 0.0}

    def settled() -> Any:
        status = stack.status()
        now = comparable(status)
        if now != last["seen"]:
            last.update(seen=now, since=time.monotonic())
            return None
        return status if status["lag"] == 0 and time.monotonic() - last["since"] > 3 else None

    return wait_for(settled, 90, "the pipeline drained", interval=0.5)


def _seed(stack: Stack) -> str:
    """Catalog and traffic, a model, our user's visit, shown and clicked lists, a poison
    message and the most popular item out of stock; returns that item's name."""
    stack.cli("simulate", "--events", "1500", "--rate", "0", *SIM)
    with Client(stack.api, TRACK, READ, ADMIN) as sr:
        sr.request("PUT", f"/v1/admin/experiments/{EXPERIMENT}", role="admin", json={
            "variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                         {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
            "status": "running"})
        for item in ("sku-1", "sku-2", "sku-3"):
            sr.track("view", user_id=USER, item_id=item)
        sr.track("add_to_cart", user_id=USER, item_id="sku-2")
        sr.flush()
        # Every event applied before the retrain (the processed count still): the rate
        # need not have fallen to 0 here, which took the rate window's 10 s more.
        _drained(stack, lambda status: (status["processed"], status["lag"]))
        stack.cli("train")
        for user in range(8):
            shown = sr.recommendations(f"u{user}", n=5)
            ids = [item.item_id for item in shown.items]
            if not ids:  # the experiment's holdout: nothing shown
                continue
            sr.track("impression", user_id=f"u{user}", item_ids=ids,
                     recommendation_id=shown.recommendation_id)
            if user % 2 == 0:
                sr.track("click", user_id=f"u{user}", item_id=ids[0],
                         recommendation_id=shown.recommendation_id)
        assert sr.recommendations(HOLDOUT_USER, n=5).source == "holdout"  # enrolled
        top = sr.popular(n=1).items[0]
        entry = sr.request("GET", f"/v1/admin/items/{top.item_id}", role="admin").json()
        sr.upsert_item(top.item_id, {"name": entry["name"], "category": entry["category"],
                                     "price": entry["price"], "in_stock": False})
        sr.flush()
    producer = KafkaProducer(bootstrap_servers=stack.kafka, acks="all")
    producer.send("events", key=b"bad", value=b"[1, 2]").get(timeout=30)
    producer.close()
    return str(entry["name"])


def _experiment_shown(metrics: dict[str, list[str]], report: dict[str, Any]) -> None:
    """The experiment's rows on the page equal its report once the pipeline drained."""
    for variant in report["variants"]:
        key = f"experiment.{EXPERIMENT}.{variant['name']}"
        assert int(_one(metrics, f"{key}.entities")) == variant["entities"] > 0
        assert float(_one(metrics, f"{key}.conversion")) == variant["conversion"]
        ci = ((variant.get("lift") or {}).get("conversion") or {}).get("ci95")
        shown = _one(metrics, f"{key}.lift_ci95")
        assert ([float(x) for x in shown.split(",")] if shown else None) == ci


def _enrolment_named(seen: dict[str, Any]) -> None:
    """The user lookup's list is the one outside experiments: an enrolled entity's variant
    is named beside it (its answers are the holdout's empty list); our user is in none."""
    assert seen["user"]["experiment"] is None
    assert f"experiment {EXPERIMENT} as variant control" in seen["holdoutUser"]["experiment"]


def _one(metrics: dict[str, list[str]], name: str) -> str:
    values = metrics.get(name)
    assert values and len(values) == 1, (name, values)
    return values[0]


def _compare(seen: dict[str, Any], status: dict[str, Any]) -> None:
    """Every number the page showed after the drain equals `streamrec status --json`."""
    m = seen["metrics"]
    assert int(_one(m, "processed")) == status["processed"] > 0
    assert float(_one(m, "events_per_s")) == status["events_per_s"] == 0
    assert int(_one(m, "lag")) == status["lag"] == 0
    assert _one(m, "model_version") == status["model_version"] is not None
    assert float(_one(m, "freshness_p50_ms")) == status["freshness"]["p50_ms"]
    assert float(_one(m, "freshness_p99_ms")) == status["freshness"]["p99_ms"]
    assert int(_one(m, "dead_lettered")) == status["dead_lettered"] == 1
    assert int(_one(m, "workers_live")) == sum(not w["stale"] for w in status["workers"]) == 1
    for name, field in (("model_users", "n_users"), ("model_items", "n_items"),
                        ("model_events", "n_events")):
        assert int(_one(m, name)) == status["model"][field]
    # Model versions, trainings and dead letters: each shown value named and exact.
    assert m["worker_model_version"] == [w["model_version"] or "" for w in status["workers"]]
    assert m["history_version"] == [t["version"] for t in status["model_history"]]
    assert m["dead_letter_offset"] == [str(d["offset"]) for d in status["dead_letters"]]
    cells = {(r["metric"], r["topic"], r["partition"]): r["value"] for r in seen["rows"]}
    assert len(status["group"]["partitions"]) >= 4
    for row in status["group"]["partitions"]:
        at = (row["topic"], row["partition"])
        assert int(cells[("end_offset", *at)]) == row["end_offset"]
        assert cells[("committed", *at)] == ("" if row["committed"] is None
                                             else str(row["committed"]))
        assert int(cells[("partition_lag", *at)]) == row["lag"]
    for name, topic in status["topics"].items():
        assert int(cells[("topic_total", name, None)]) == topic["total"], name


def test_the_dashboard_in_chromium(tools: Tools, stack: Stack, tmp_path: Path) -> None:
    out_of_stock = _seed(stack)
    traffic = subprocess.Popen([sys.executable, "-m", "streamrec.cli", "simulate", "--rate", "80",
                                "--duration", "600", "--no-catalog", "--seed", "7", *SIM],
                               cwd=stack.cwd, env=stack.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    phase_a, go, result = tmp_path / "phase-a.json", tmp_path / "go.json", tmp_path / "result.json"
    config = {"api": stack.api, "adminKey": ADMIN, "userId": USER,
              "holdoutUserId": HOLDOUT_USER, "timeout": 300,
              "screenshots": str(SCREENSHOTS), "phaseA": str(phase_a), "go": str(go),
              "result": str(result)}
    try:
        with driver(tools, "dashboard.mjs", config, tmp_path) as proc:
            wait_for(lambda: phase_a.exists() or proc.poll() is not None, 240,
                     "the page's phase A", interval=0.5)
            os.killpg(traffic.pid, signal.SIGTERM)
            traffic.wait(timeout=30)
            before = _drained(stack)
            go.write_text(json.dumps({"drainedAt": time.time()}))
    finally:
        if traffic.poll() is None:
            os.killpg(traffic.pid, signal.SIGKILL)
            traffic.wait()
    seen = driver_result(tmp_path, result)
    after = stack.status()
    assert _comparable(after) == _comparable(before), "the pipeline moved after the drain"

    _compare(seen, after)
    assert seen["problems"] == []
    # The numbers moved while the traffic flowed.
    moving = seen["moving"]
    assert len(moving) >= 3 and moving[-1]["processed"] > moving[0]["processed"]
    assert moving[-1]["events_per_s"] > 0
    assert all(count > 0 for count in seen["charts"].values()), seen["charts"]
    # The key: refused when wrong, then only in this tab's session storage and a header.
    assert "Sign-in failed" in seen["wrongKeyMessage"]
    assert not [u for u in seen["urls"] if ADMIN in u or "not-the-admin-key" in u]
    assert seen["storage"] == {"session": 1, "local": 0, "cookie": "", "inSession": True}
    paths = {urlparse(u).path for u in seen["urls"] if u.startswith(stack.api)}
    assert all(p.startswith(ALLOWED_PATHS) for p in paths), paths
    # Shop: the dead letter's reason and the out-of-stock warning are shown.
    assert seen["deadLetters"] == ["message is not a JSON object"]
    assert seen["stockWarning"] and out_of_stock in seen["stockWarning"]
    # Lookups: the item's exact counts so far, similar items; our user's visit.
    item = seen["item"]
    with Client(stack.api, TRACK, READ, ADMIN) as sr:
        final = sr.request("GET", f"/v1/admin/items/{item['id']}/stats", role="admin").json()
        names = {i: sr.request("GET", f"/v1/admin/items/{i}", role="admin").json()["name"]
                 for i in ("sku-1", "sku-2", "sku-3")}
    assert 0 < item["views"] <= final["views"] and item["similar"] > 0 and item["name"]
    assert sorted(line.split(" sku-")[0] for line in seen["user"]["recent"]) == sorted(
        names.values())
    assert seen["user"]["cart"] == 1 and seen["user"]["list"] > 0
    # ... with a shopper-readable reason per item and the list's explain trace.
    assert len(seen["user"]["reasons"]) == seen["user"]["list"]
    assert seen["user"]["traceShown"] and seen["user"]["traceSources"]
    assert all(s["size"] >= 0 and s["name"] for s in seen["user"]["traceSources"])
    _enrolment_named(seen)
    # The running experiment, as its report gives it.
    with Client(stack.api, TRACK, READ, ADMIN) as sr:
        report = sr.request("GET", f"/v1/admin/experiments/{EXPERIMENT}/report",
                            role="admin").json()
    _experiment_shown(seen["metrics"], report)
    # Usable on a phone: nothing wider than the screen; on both screens no column hidden
    # behind a sideways scroll (the workers' model column once was) and no cell outside
    # its card.
    assert seen["phone"]["scrollWidth"] <= seen["phone"]["width"] == 390
    assert set(seen["layout"]) == {"desktop", "phone"}
    for viewport, layout in seen["layout"].items():
        assert layout["scrollWidth"] <= layout["width"], viewport
        assert layout["hiddenColumns"] == [] and layout["outside"] == [], (viewport, layout)
    # An id with "/" is looked up like any other (an unknown item here).
    assert seen["slashLookup"] == {"name": "a/b ü", "stock": "not in catalog", "error": None,
                                   "resultShown": True}
    # An id a browser cannot send: said in the item's card, no stale result left.
    assert 'No answer for ".."' in seen["dotsLookup"]["error"]
    assert not seen["dotsLookup"]["resultShown"]
    for name in ("dashboard-desktop.png", "dashboard-phone.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
