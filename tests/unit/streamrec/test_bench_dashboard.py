"""`streamrec bench dashboard`'s arithmetic: extra API CPU over idle as a share of one core,
and in recommendations the API could have served instead."""

from __future__ import annotations

import pytest

from streamrec.bench.dashboard import summarize
from streamrec.cli import main


def test_share_of_capacity_is_extra_cpu_per_second_over_idle() -> None:
    phases = {
        "idle": {"seconds": 10.0, "api_cpu_s": 0.02},  # 2 ms/s of background work
        "one_dashboard": {"seconds": 10.0, "api_cpu_s": 0.04, "aggregates": 2},
        "ten_dashboards": {"seconds": 10.0, "api_cpu_s": 0.07, "aggregates": 5},
        "serving": {"cpu_us_per_request": 100.0},
    }
    out = summarize(phases)
    assert out["serving_capacity_rps_one_core"] == 10_000
    assert out["one_dashboard"] == {"extra_api_cpu_ms_per_s": 2.0, "cpu_ms_per_aggregate": 10.0,
                                    "share_of_capacity_pct": 0.2,
                                    "recommendations_per_s_forgone": 20.0}
    assert out["ten_dashboards"]["share_of_capacity_pct"] == 0.5
    # Noise can make a phase cheaper than idle: never a negative cost.
    phases["one_dashboard"]["api_cpu_s"] = 0.01
    assert summarize(phases)["one_dashboard"]["share_of_capacity_pct"] == 0.0


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "dashboard", "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: streamrec bench dashboard")
