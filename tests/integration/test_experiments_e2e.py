"""Experiments end to end on a stack started by ``streamrec up`` (real broker, Redis,
worker and API processes), driven by ``streamrec simulate --experiment``'s shoppers:

* the report's per-variant counts equal what the shoppers sent, through a worker
  SIGKILL and after ``streamrec replay --rebuild``;
* shoppers whose purchases depend on relevant lists give a lift whose interval excludes
  0; shoppers who ignore the lists give one that contains 0;
* a broken assignment (shoppers outside the control lost before their list) is flagged
  by the sample-ratio-mismatch test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from streamrec.sim.config import SimulationConfig
from streamrec.sim.experiment import ExperimentSimConfig, run_experiment_simulation
from tests.integration.test_chaos import ADMIN, TRACK, Stack
from tests.integration.test_chaos import stack as chaos_stack  # noqa: F401 - a fixture
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def up(request: pytest.FixtureRequest) -> Stack:
    """test_chaos's ``stack``: ``streamrec up`` with the session's broker and Redis."""
    stack: Stack = request.getfixturevalue("chaos_stack")
    return stack

A = {"X-API-Key": ADMIN}
HOLDOUT_VS_RECS = {"variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                                {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
                   "contexts": ["home"]}


def define(stack: Stack, experiment_id: str, spec: dict[str, Any]) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        resp = client.put(f"/v1/admin/experiments/{experiment_id}", json=spec, headers=A)
        assert resp.status_code == 200, resp.text


def report_of(stack: Stack, experiment_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        resp = client.get(f"/v1/admin/experiments/{experiment_id}/report", headers=A)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


def simulate(stack: Stack, experiment: ExperimentSimConfig, *, seed: int,
             catalog: bool = True) -> dict[str, Any]:
    base = SimulationConfig(api_url=stack.api_url, tracking_key=TRACK, admin_key=ADMIN,
                            items=200, seed=seed, catalog=catalog, progress=False)
    started = time.monotonic()
    result = asyncio.run(run_experiment_simulation(base, experiment, wait_s=90))
    print(f"\nEXPERIMENT {experiment.experiment_id}: {time.monotonic() - started:.1f}s "
          f"truth={result['truth']} report={result['report']}")
    return result


def lifts(report: dict[str, Any]) -> dict[str, Any]:
    treatment = next(v for v in report["variants"] if v["name"] == "treatment")
    return treatment["lift"]


def test_report_is_exact_through_a_worker_kill_and_a_rebuild(up: Stack) -> None:
    stack = up
    define(stack, "exact", HOLDOUT_VS_RECS)
    killer = threading.Thread(target=lambda: (time.sleep(3.0), stack.kill("worker"),
                                              stack.up()))
    killer.start()
    try:
        result = simulate(stack, ExperimentSimConfig("exact", visitors=400, base_rate=0.3,
                                                     list_effect=2.0), seed=11)
    finally:
        killer.join()
    assert stack.kills == 1
    assert result["differences"] == [], result["differences"][:10]
    before = result["report"]
    assert sum(v["entities"] for v in before["variants"]) == 400
    assert all(v["purchases"] > 0 for v in before["variants"])
    stack.cli("replay", "--rebuild")
    after = wait_for(lambda: (r := report_of(stack, "exact"))["variants"] == before["variants"]
                     and r, 120, "the rebuilt report equals the one before", interval=0.5)
    assert after["srm_p_value"] == before["srm_p_value"]


def test_true_lift_is_found_ignoring_shoppers_show_none_and_srm_flags_bias(up: Stack) -> None:
    stack = up
    define(stack, "lift", HOLDOUT_VS_RECS)
    found = simulate(stack, ExperimentSimConfig("lift", visitors=700, base_rate=0.1,
                                                list_effect=4.0), seed=21)
    assert found["differences"] == []
    lift = lifts(found["report"])
    assert lift["conversion"]["ci95"][0] > 0, lift
    assert lift["revenue_per_entity"]["ci95"][0] > 0, lift
    assert found["report"]["srm_p_value"] > 0.001

    define(stack, "lift", {**HOLDOUT_VS_RECS, "status": "stopped"})
    define(stack, "null", HOLDOUT_VS_RECS)
    null = simulate(stack, ExperimentSimConfig("null", visitors=600, base_rate=0.1,
                                               ignore_lists=True), seed=22, catalog=False)
    assert null["differences"] == []
    lift = lifts(null["report"])
    assert lift["conversion"]["ci95"][0] < 0 < lift["conversion"]["ci95"][1], lift
    assert lift["revenue_per_entity"]["ci95"][0] < 0 < lift["revenue_per_entity"]["ci95"][1]

    define(stack, "null", {**HOLDOUT_VS_RECS, "status": "stopped"})
    define(stack, "biased", HOLDOUT_VS_RECS)
    biased = simulate(stack, ExperimentSimConfig("biased", visitors=600, srm_loss=0.3),
                      seed=23, catalog=False)
    assert biased["differences"] == []
    assert biased["truth"]["lost"] > 60  # a tenth of the visitors, as before
    assert biased["report"]["srm_p_value"] < 0.001, biased["report"]
