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


def test_an_open_loop_phase_shorter_than_one_interval_still_measures_a_request() -> None:
    # `bench serve --rates 1 --duration 0.5` (the smallest the flags allow) sent no
    # request in the fixed-rate phase: NaN latencies in the JSON (not JSON at all for a
    # strict parser) and "achieved -0" in the table.
    import asyncio
    import json

    from streamrec.bench.loadgen import open_loop

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> dict[str, Any]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await open_loop("127.0.0.1", port, 1.0, 0.5,
                                   [b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"])
        finally:
            server.close()

    result = asyncio.run(main())
    assert result["requests"] == 1 and result["errors"] == 0
    assert 0 < result["achieved_rps"] <= 1.0 and result["p99_ms"] is not None
    json.dumps(result, allow_nan=False)


def test_the_table_shows_a_phase_without_answers() -> None:
    from streamrec.bench.serve import markdown

    empty = {"achieved_rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0}
    full = {"achieved_rps": 900.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
    table = markdown({"rates": [5], "api": {"5": empty, "max": full},
                      "bare": {"5": empty, "max": full}})
    assert "| 5 req/s (achieved 0) | — | — | — | — | 0 |" in table


def test_live_writes_are_off_by_default_and_zero_means_off() -> None:
    import argparse

    from streamrec.bench.serve import configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert parser.parse_args([]).live_writes == 0
    assert parser.parse_args(["--live-writes", "0"]).live_writes == 0
    assert parser.parse_args(["--live-writes", "2.5"]).live_writes == 2.5


def test_live_write_batches_add_up_to_the_rate() -> None:
    from streamrec.bench.live_writes import BATCHES_PER_S, batch_sizes

    for rate in (0.5, 3, 2000, 2345.5):
        sizes = [batch_sizes(rate, b) for b in range(BATCHES_PER_S * 4)]
        assert sum(sizes) == int(rate * 4) and max(sizes) - min(sizes) <= 1


def test_the_table_names_the_live_writes_when_there_were_some() -> None:
    from streamrec.bench.serve import markdown

    phase = {"achieved_rps": 900.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
             "live_writes_eps": 1990.0, "near_cache_invalidations": 40,
             "near_cache_flushes": 0}
    results = {"rates": [5], "api": {"5": phase, "max": phase},
               "bare": {"5": phase, "max": phase}}
    assert "Live writes" not in markdown(results)
    table = markdown({**results, "live_writes": {"rate": 2000.0, "achieved_eps": 1995.0}})
    assert "Live writes, 2000 events/s offered (1995 achieved over the run)" in table
    assert "40 reports of written keys and 0 flushes" in table


def test_a_ratio_the_near_cache_made_says_so() -> None:
    from streamrec.bench.serve import markdown

    phase = {"achieved_rps": 900.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
    results = {"rates": [5], "api": {"5": phase, "max": {**phase, "near_cache_hit_share": 0.7}},
               "bare": {"5": phase, "max": phase}}
    assert "near cache answered" not in markdown(results)
    results["api"]["max"]["near_cache_hit_share"] = 1.0
    table = markdown(results)
    assert "The near cache answered 100% of the lists at max throughput" in table
    assert "--live-writes 2000" in table and "STREAMREC_SERVE_CACHE_ENTRIES=0" in table
    assert "near cache answered" not in markdown(results, caveat=False)  # --repeat's runs


def test_the_medians_name_the_near_cache_hits_of_each_run() -> None:
    runs = [_run(2.0, 1.0, 1.1), _run(2.0, 1.0, 1.2)]
    for run, share in zip(runs, (0.9, 1.0), strict=True):
        run["api"]["max"] = {"near_cache_hit_share": share}
    text = summary({"rates": [1000], "runs": runs})
    assert "near-cache hits at max throughput: 90%, 100%" in text
    assert "The near cache answered 95% of the lists" in text
    assert "near cache" not in summary({"rates": [1000], "runs": [_run(2.0, 1.0, 0.5)]})
