"""The load generator of ``streamrec bench serve``: raw HTTP/1.1 over keep-alive
connections with asyncio, run as its own process (``python -m streamrec.bench.serve
--loadgen SPEC``) so it never shares an interpreter with a server under test.

Fixed rates are *open loop*: request ``i`` is scheduled at ``start + i / rate`` and its
latency is measured from that scheduled time, so a stalled server is charged for every
request it delays (no coordinated omission). Maximum throughput is closed loop: a fixed
number of connections, each sending its next request when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any, cast

#: Keep-alive connections of the open-loop generator (a fleet of frontend servers).
OPEN_CONNECTIONS = 64
#: Connections of the closed-loop (max throughput) phase.
CLOSED_CONNECTIONS = 32
#: Items in a served list.
N = 10
#: Latency clock (uvloop's ``loop.time()`` only has millisecond resolution).
clock = time.perf_counter


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buf[:head_end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
                break
        if len(self.buf) < head_end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[:head_end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


#: Request mixes (``--mix``): the home page's personal lists only, or with the
#: merchandising parameters a shop sends (API.md "Merchandising"): per request, weights of
#: no parameter, a category filter (one of the bench's 40 categories), a price band
#: (a quarter of the bench's 1..200 prices) and ``max_per_category=2``.
MIXES: dict[str, list[tuple[float, str]]] = {
    "home": [(1.0, "")],
    "merch": [(0.5, ""), (0.15, "category"), (0.15, "price"), (0.2, "cap")],
}


def _merch_query(kind: str, rnd: random.Random) -> str:
    if kind == "category":
        return f"&category=c{rnd.randrange(40)}"
    if kind == "price":
        low = rnd.randrange(150)
        return f"&price_min={low}&price_max={low + 50}"
    if kind == "cap":
        return "&max_per_category=2"
    return ""


def _requests(host: str, port: int, users: int, key: str, count: int,
              mix: str = "home") -> list[bytes]:
    rnd = random.Random(7)
    weights, kinds = zip(*MIXES[mix], strict=True)
    out = []
    for _ in range(count):
        user = f"u{rnd.randrange(users)}"
        extra = _merch_query(rnd.choices(kinds, weights)[0], rnd) if mix != "home" else ""
        out.append(
            f"GET /v1/users/{user}/recommendations?n={N}{extra} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nX-API-Key: {key}\r\n\r\n".encode()
        )
    return out


async def _connect(host: str, port: int, count: int) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(count):
        _, proto = await loop.create_connection(_Conn, host, port)
        conns.append(proto)
    return conns


async def open_loop(host: str, port: int, rate: float, duration: float, reqs: list[bytes]
                    ) -> dict[str, Any]:
    """Send at ``rate`` req/s for ``duration`` s; latency from each scheduled send time."""
    conns = await _connect(host, port, OPEN_CONNECTIONS)
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    # at least one request: a phase shorter than one request's interval sent none and
    # reported NaN latencies (invalid JSON) at an achieved rate of -0
    total = max(1, int(rate * duration))
    latencies: list[float] = []
    errors = 0
    tasks = set()
    start = clock() + 0.05

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await idle.get()
        status = await conn.request(reqs[i % len(reqs)])
        latencies.append(clock() - scheduled)
        if status != 200:
            errors += 1
        idle.put_nowait(conn)

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    # the schedule's span at least: one quick answer is not an achieved rate of 200/s
    elapsed = max(clock() - start, total / rate)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return _summary(latencies, errors, elapsed, offered=rate)


async def closed_loop(host: str, port: int, duration: float, reqs: list[bytes]
                      ) -> dict[str, Any]:
    """As fast as ``CLOSED_CONNECTIONS`` connections go for ``duration`` s."""
    conns = await _connect(host, port, CLOSED_CONNECTIONS)
    latencies: list[float] = []
    errors = 0
    start = clock()
    stop_at = start + duration

    async def worker(w: int, conn: _Conn) -> None:
        nonlocal errors
        i = w
        while clock() < stop_at:
            sent = clock()
            status = await conn.request(reqs[i % len(reqs)])
            latencies.append(clock() - sent)
            errors += status != 200
            i += CLOSED_CONNECTIONS

    await asyncio.gather(*(worker(w, c) for w, c in enumerate(conns)))
    elapsed = clock() - start
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return _summary(latencies, errors, elapsed, offered=None)


def _summary(latencies: list[float], errors: int, elapsed: float,
             offered: float | None) -> dict[str, Any]:
    data = sorted(latencies)

    def pct(p: float) -> float | None:
        if not data:  # no answer at all: nothing measured (null in the JSON, not NaN)
            return None
        return round(data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000, 3)

    return {"offered_rps": offered,
            "achieved_rps": round(len(data) / elapsed, 1) if elapsed > 0 else 0.0,
            "requests": len(data), "errors": errors, "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "p999_ms": pct(99.9),
            "max_ms": round(data[-1] * 1000, 3) if data else None}


def table_ms(value: float | None) -> str:
    """A latency of :func:`_summary` in a table: ``—`` when the phase got no answer."""
    return "—" if value is None else f"{value:.2f} ms"


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process, this one as "loadgen".

    Linux ``/proc`` only; processes it cannot read are left out.
    """
    out = {"loadgen": sum(os.times()[:2])}
    tick = os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


#: The near cache's counters in ``/metrics`` (api.metrics): hits, misses, Redis's reports
#: of written keys, whole flushes.
NEAR_COUNTERS = ("streamrec_api_near_cache_hits_total", "streamrec_api_near_cache_misses_total",
                 "streamrec_api_near_cache_invalidations_total",
                 "streamrec_api_near_cache_flushes_total")


async def near_counts(host: str, port: int, admin_key: str | None) -> dict[str, float] | None:
    """The API's near-cache counters so far, by name (None: no key, or not exported)."""
    if admin_key is None:
        return None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: "
                     f"{admin_key}\r\nConnection: close\r\n\r\n".encode())
        text = (await reader.read()).decode("utf-8", "replace")
    finally:
        writer.close()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in NEAR_COUNTERS:
            found[name] = float(value)
    return found if len(found) == len(NEAR_COUNTERS) else None


def _near_delta(result: dict[str, Any], before: dict[str, float],
                after: dict[str, float]) -> None:
    hits, misses, reports, flushes = (after[c] - before[c] for c in NEAR_COUNTERS)
    result["near_cache_hit_share"] = round(hits / (hits + misses), 3) if (
        hits + misses) else None
    result["near_cache_invalidations"] = int(reports)
    result["near_cache_flushes"] = int(flushes)


async def _measured(phase: Any, pids: dict[str, int],
                    near: tuple[str, int, str | None] = ("", 0, None),
                    writer_count: str | None = None) -> dict[str, Any]:
    """Run one phase; add each process's CPU time per request and the load average,
    the near cache's hit share, reports and flushes of the phase when ``near`` (host,
    port, admin key) can read them, and the live writer's events per second when
    ``writer_count`` names its count file (``bench serve --live-writes``).

    CPU per request is what a noisy shared machine distorts least: the ratio of two
    servers' throughputs on an otherwise idle machine follows from it.
    """
    from streamrec.bench.live_writes import events_written

    load = os.getloadavg()[0]
    counts = await near_counts(*near)
    before = cpu_seconds(pids)
    written, began = events_written(writer_count), clock()
    result: dict[str, Any] = await phase
    written_after, took = events_written(writer_count), clock() - began
    after = cpu_seconds(pids)
    if counts is not None and (later := await near_counts(*near)) is not None:
        _near_delta(result, counts, later)
    if written is not None and written_after is not None:
        result["live_writes_eps"] = round((written_after - written) / took, 1)
    served = max(1, result["requests"])
    result["cpu_us_per_request"] = {
        name: round((after[name] - before[name]) / served * 1e6, 1)
        for name in after if name in before}
    result["load_avg_1m"] = round(load, 2)
    return result


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """The load generator process: every phase of ``spec`` against one target."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    reqs = _requests(spec["host"], spec["port"], spec["users"], spec["key"], 20000,
                     spec.get("mix", "home"))

    pids: dict[str, int] = spec.get("watch", {})
    near = (spec["host"], spec["port"], spec.get("admin_key"))
    writer = spec.get("writer_count")

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        await open_loop(spec["host"], spec["port"], 500, spec["warmup"], reqs)  # warm-up
        for rate in spec["rates"]:
            out[str(rate)] = await _measured(
                open_loop(spec["host"], spec["port"], rate, spec["duration"], reqs), pids, near,
                writer)
        out["max"] = await _measured(
            closed_loop(spec["host"], spec["port"], spec["duration"], reqs), pids, near,
            writer)
        return out

    return asyncio.run(main())
