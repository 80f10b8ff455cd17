"""The operator dashboard tells the truth about what it cannot read, and shows whether
recommendations pay: headless Chromium (Debian's) on ``/dashboard`` of a stack started
with ``streamrec up`` (Tansu, redis-server, a worker and the API as processes).

tests/browser/dashboard_outage.mjs reads the page three times:

* with an experiment running whose entities bought things: each variant's purchasers,
  conversion, revenue, revenue per entity and both lifts with their 95 % intervals equal
  ``GET /v1/admin/experiments/{id}/report`` (issue 16: "prove that recommendations pay");
* after Redis was SIGKILLed: the pill no longer says "live" and what Redis holds
  (events processed, dead letters, the model, workers, the shop lists, attribution,
  experiments) is shown as unknown, not as 0 or "none yet" under a green pill (as
  `streamrec status --json`, the page gets zeros with an ``errors`` entry);
* after ``streamrec up`` restarted Redis: live again, without a reload.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamrec.client import Client
from tests.browser.harness import HERE, Tools, cli, driver, driver_result, find_tools, stack_up
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SCREENSHOTS = HERE / "screenshots-dashboard"
EXPERIMENT = "pays-or-not"
TRACK, READ, ADMIN = "outage-track-key-0123", "outage-read-key-01234", "outage-admin-key-0123"
#: Numbers held in Redis: unknown while it is unreachable.
FROM_REDIS = ("processed", "events_per_s", "dead_lettered", "workers_live", "dead_letters_shown",
              "popular_out_of_stock")


@pytest.fixture(scope="module")
def tools() -> Tools:
    return find_tools(HERE)


def _seed(api: str) -> dict[str, Any]:
    """An experiment whose 24 entities each got a list, two thirds of them buying; returns
    its report once every purchase is counted."""
    with Client(api, TRACK, READ, ADMIN) as sr:
        sr.upsert_item("sku-1", {"name": "Kettle", "category": "kitchen", "price": 20.0,
                                 "in_stock": True})
        sr.request("PUT", f"/v1/admin/experiments/{EXPERIMENT}", role="admin", json={
            "variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                         {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
            "status": "running"})
        buyers = 0
        for i in range(24):
            sr.recommendations(f"shopper-{i}", n=5)
            if i % 3:
                buyers += 1
                sr.track("purchase", user_id=f"shopper-{i}", item_id="sku-1", quantity=1 + i % 2,
                         price=5.0 + i)
        sr.flush()

        def counted() -> dict[str, Any] | None:
            report: dict[str, Any] = sr.request(
                "GET", f"/v1/admin/experiments/{EXPERIMENT}/report", role="admin").json()
            done = sum(v["purchasers"] for v in report["variants"]) == buyers
            return report if done else None

        return wait_for(counted, 60, "every purchase in the report", interval=0.5)


def _values(seen: dict[str, Any], name: str) -> list[str]:
    return [m["value"] for m in seen["metrics"].get(name, [])]


def _shown_as_report(seen: dict[str, Any], report: dict[str, Any]) -> None:
    """Each variant's row equals the report: counts, money and both lifts."""
    for v in report["variants"]:
        key = f"experiment.{EXPERIMENT}.{v['name']}"
        for field in ("entities", "purchasers", "revenue"):
            assert [float(x) for x in _values(seen, f"{key}.{field}")] == [v[field]], field
        for field in ("conversion", "revenue_per_entity"):
            assert [float(x) for x in _values(seen, f"{key}.{field}")] == [v[field]], field
        lifts = v.get("lift") or {}
        for name, metric in (("lift", "conversion"), ("revenue_lift", "revenue_per_entity")):
            lift = lifts.get(metric)
            assert _values(seen, f"{key}.{name}") == [str(lift["value"]) if lift else ""], name
            ci = lift["ci95"] if lift else None
            shown = _values(seen, f"{key}.{name}_ci95")
            assert len(shown) == 1, name
            assert ([float(x) for x in shown[0].split(",")] if shown[0] else None) == ci, name
    treatment = next(v for v in report["variants"] if v["name"] == "treatment")
    assert treatment["lift"]["revenue_per_entity"]["ci95"], "a revenue lift to show"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], str]]:
    cwd = tmp_path_factory.mktemp("dashboard-outage")
    with stack_up(cwd, STREAMREC_RETRAIN_INTERVAL_S="0", STREAMREC_RETRAIN_GROWTH="0",
                  STREAMREC_TRACKING_KEYS=TRACK, STREAMREC_READ_KEYS=READ,
                  STREAMREC_ADMIN_KEYS=ADMIN) as (env, state):
        yield cwd, env, state["api_url"].rstrip("/")


def test_outage_and_experiment_money(tools: Tools, stack: tuple[Path, dict[str, str], str],
                                     tmp_path: Path) -> None:
    cwd, env, api = stack
    report = _seed(api)
    steps, go, result = tmp_path / "steps", tmp_path / "go", tmp_path / "result.json"
    go.mkdir()
    config = {"api": api, "adminKey": ADMIN, "experiment": EXPERIMENT, "variant": "treatment",
              "timeout": 240, "screenshots": str(SCREENSHOTS), "steps": str(steps),
              "go": str(go), "result": str(result)}
    with driver(tools, "dashboard_outage.mjs", config, tmp_path) as proc:
        wait_for(lambda: (steps / "before.json").exists() or proc.poll() is not None, 120,
                 "the page's first reading", interval=0.5)
        state = json.loads((cwd / ".streamrec" / "stack.json").read_text())
        os.kill(state["processes"]["redis"]["pid"], signal.SIGKILL)
        (go / "killed").write_text(str(time.time()))
        wait_for(lambda: (steps / "outage.json").exists() or proc.poll() is not None, 90,
                 "the page's reading during the outage", interval=0.5)
        up = cli(cwd, env, "up", "--timeout", "90")
        assert up.returncode == 0, up.stdout + up.stderr
        (go / "restarted").write_text(str(time.time()))
    seen = driver_result(tmp_path, result)
    assert seen["problems"] == []

    before, outage, after = seen["before"], seen["outage"], seen["after"]
    _shown_as_report(before, report)

    # Redis away: said above the numbers, the pill is not green, and nothing it holds is
    # shown as a real 0 or an empty list.
    assert outage["state"] != "live" and "live" not in outage["pill"], outage["pill"]
    for name in FROM_REDIS:
        shown = outage["metrics"][name]
        assert [m["value"] for m in shown] == [""], (name, shown)
        assert [m["text"] for m in shown] != ["0"], name
    assert "none yet" not in outage["metrics"]["model_version"][0]["text"]
    for table in ("workers", "history", "popular", "trending", "attribution-origin",
                  "attribution-context", "experiments-rows"):
        assert "unknown" in outage["empty"].get(table, ""), (table, outage["empty"])
    assert outage["experimentsShown"]
    # Kafka was readable all along: its lag is a real number.
    assert _values(outage, "lag") == ["0"]

    # Back without a reload (this Redis kept nothing: the counts start again).
    assert after["state"] == "live" and after["banner"] is None and not seen["reloaded"]
    assert _values(after, "processed") != [""] and _values(after, "workers_live") == ["1"]
