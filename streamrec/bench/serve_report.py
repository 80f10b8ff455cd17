"""The tables ``streamrec bench serve`` prints (:mod:`streamrec.bench.serve`): one run
side by side with the bare endpoint, and the medians of ``--repeat`` runs."""

from __future__ import annotations

from typing import Any

from streamrec.bench.loadgen import CLOSED_CONNECTIONS, table_ms

#: From this share of near-cache hits at max throughput the report says that the ratio
#: is mostly the cache's: a hit skips the serve script and its post-processing (its API
#: CPU is about the bare endpoint's, ~100 µs against a miss's ~240, its Redis CPU a
#: tenth of a miss's; docs/benchmarks.md, "The near cache"), so at 80 % hits they take
#: about two thirds of the API's CPU and most of Redis's.
CACHE_DOMINATED = 0.8


def _share(phase: dict[str, Any]) -> str:
    """The phase's near-cache hit share, as a table cell ("-": not measured)."""
    share = phase.get("near_cache_hit_share")
    return "-" if share is None else f"{share:.0%}"


def markdown(results: dict[str, Any], *, caveat: bool = True) -> str:
    """The side-by-side table of docs/benchmarks.md (``caveat``: with the line of
    :func:`cache_caveat` when it applies; the ``--repeat`` summary says it once instead)."""
    api, bare = results["api"], results["bare"]
    lines = ["| load | streamrec p50 | streamrec p99 | bare p50 | bare p99 | streamrec errors "
             "| near-cache hits |", "|---|---|---|---|---|---|---|"]
    for rate in results["rates"]:
        a, b = api[str(rate)], bare[str(rate)]
        cells = " | ".join(table_ms(x[f]) for x in (a, b) for f in ("p50_ms", "p99_ms"))
        lines.append(f"| {rate} req/s (achieved {a['achieved_rps']:.0f}) | {cells} "
                     f"| {a['errors']} | {_share(a)} |")
    a, b = api["max"], bare["max"]
    ratio = a["achieved_rps"] / b["achieved_rps"] if b["achieved_rps"] else float("nan")
    lines.append(f"| max throughput ({CLOSED_CONNECTIONS} connections) | "
                 f"**{a['achieved_rps']:.0f} req/s** (p50 {table_ms(a['p50_ms'])}) | | "
                 f"**{b['achieved_rps']:.0f} req/s** (p50 {table_ms(b['p50_ms'])}) | "
                 f"ratio **{ratio:.2f}** | {a['errors']} | {_share(a)} |")
    ca, cb = a.get("cpu_us_per_request", {}), b.get("cpu_us_per_request", {})
    if ca and cb:
        lines.append("")
        lines.append(
            f"CPU per request at max throughput: streamrec API {ca.get('server', '?')} µs"
            f" + Redis {ca.get('redis', '?')} µs (load generator {ca['loadgen']} µs); "
            f"bare endpoint {cb.get('server', '?')} µs (load generator {cb['loadgen']} µs). "
            f"1-minute load average at the start of the phase: {a['load_avg_1m']} / "
            f"{b['load_avg_1m']}.")
    if results.get("live_writes"):
        lines += ["", _live_writes(results["live_writes"], api, bare)]
    note = cache_caveat(a.get("near_cache_hit_share")) if caveat else None
    if note:
        lines += ["", note]
    return "\n".join(lines)


def cache_caveat(share: float | None) -> str | None:
    """What the ratio measured when the near cache answered most lists at max throughput
    (``share`` of them), else None: the bench's 10,000 shoppers are asked for again and
    again while nothing rewrites their lists, which a live shop does between most of one
    shopper's requests."""
    if share is None or share < CACHE_DOMINATED:
        return None
    return (f"The near cache answered {share:.0%} of the lists at max throughput: the ratio "
            f"is mostly the cache's, not the serve path's. For a shop whose lists change "
            f"while shoppers read them add `--live-writes 2000`; for the serve path alone "
            f"set STREAMREC_SERVE_CACHE_ENTRIES=0 (docs/benchmarks.md, \"The near cache\").")


def _live_writes(live: dict[str, Any], api: dict[str, Any], bare: dict[str, Any]) -> str:
    """The ``--live-writes`` line: the writer's rate achieved in each closed-loop phase,
    its CPU per request, and what the API's near cache received meanwhile."""
    a, b = api["max"], bare["max"]

    def cpu(phase: dict[str, Any]) -> str:
        return str(phase.get("cpu_us_per_request", {}).get("writer", "?"))

    return (f"Live writes, {live['rate']:g} events/s offered ({live['achieved_eps']:g} "
            f"achieved over the run): at max throughput {a.get('live_writes_eps', '?')} "
            f"events/s during streamrec's phase, {b.get('live_writes_eps', '?')} during the "
            f"bare endpoint's; writer CPU per request {cpu(a)} / {cpu(b)} µs; the near "
            f"cache received {a.get('near_cache_invalidations', '?')} reports of written "
            f"keys and {a.get('near_cache_flushes', '?')} flushes in streamrec's phase.")


def summary(results: dict[str, Any]) -> str:
    """Medians over the runs of one ``--repeat`` invocation (p99 per rate, ratio)."""
    runs = results["runs"]

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    lines = [f"Medians over {len(runs)} runs:", ""]
    for rate in results["rates"]:
        api = [r["api"][str(rate)]["p99_ms"] for r in runs]
        bare = [r["bare"][str(rate)]["p99_ms"] for r in runs]
        lines.append(f"* {rate} req/s: streamrec p99 {median(api):.2f} ms "
                     f"(runs: {', '.join(f'{v:.2f}' for v in api)}), bare p99 "
                     f"{median(bare):.2f} ms")
    ratios = [r["throughput_ratio"] for r in runs]
    lines.append(f"* throughput ratio {median(ratios):.2f} "
                 f"(runs: {', '.join(f'{v:.2f}' for v in ratios)})")
    shares = [r["api"].get("max", {}).get("near_cache_hit_share") for r in runs]
    known = [v for v in shares if v is not None]
    if known:
        lines.append(f"* near-cache hits at max throughput: "
                     f"{', '.join(f'{v:.0%}' for v in known)}")
        caveat = cache_caveat(median(known))
        if caveat:
            lines += ["", caveat]
    return "\n".join(lines)
