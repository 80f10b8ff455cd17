"""``streamrec bench serve`` reporting helpers: medians over ``--repeat`` runs, pinning."""

from __future__ import annotations

import os
from typing import Any

import pytest

from streamrec.bench.serve import _pin_plan, summary


def _run(p99_api: float, p99_bare: float, ratio: float) -> dict[str, Any]:
    return {"api": {"1000": {"p99_ms": p99_api}}, "bare": {"1000": {"p99_ms": p99_bare}},
            "throughput_ratio": ratio}


def test_summary_reports_medians_and_every_run() -> None:
    results = {"rates": [1000], "runs": [_run(30.0, 9.0, 0.5), _run(4.0, 3.0, 0.7),
                                         _run(6.0, 5.0, 0.6)]}
    text = summary(results)
    assert "Medians over 3 runs" in text
    assert "streamrec p99 6.00 ms (runs: 30.00, 4.00, 6.00), bare p99 5.00 ms" in text
    assert "throughput ratio 0.60 (runs: 0.50, 0.70, 0.60)" in text


def test_summary_of_an_even_number_of_runs_averages_the_middle_two() -> None:
    text = summary({"rates": [1000], "runs": [_run(2.0, 1.0, 0.4), _run(4.0, 3.0, 0.8)]})
    assert "streamrec p99 3.00 ms" in text and "throughput ratio 0.60" in text


def test_pinning_is_opt_in_and_keeps_the_server_apart() -> None:
    assert _pin_plan(False) is None
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    plan = _pin_plan(True)
    assert plan is not None
    assert plan["server"] != plan["redis"] and plan["redis"] == plan["loadgen"]
