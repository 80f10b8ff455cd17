"""Per-process CPU utilisation of the running stack, sampled from ``/proc`` once a second.

Answers "is the pipeline CPU-bound or waiting?" during ``streamrec bench ingest``: prints
one JSON line per interval with each process's share of one core (utime + stime delta ÷
interval) and, as ``NAME~wait``, its share of the interval spent runnable but not running
(run-queue delay from ``/proc/PID/schedstat``, summed over threads). A worker well below
100 % with little run-queue delay while a backlog exists is waiting (I/O, timeouts); with
a large delay it is starved of CPU by other processes.
Processes: the stack's (``.streamrec/stack.json``) plus any other python process whose
command line mentions this checkout and ``worker`` (the bench's extra workers).
Run: ``.venv/bin/python scripts/cpu_sampler.py SECONDS > samples.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def runq_wait_s(pid: int) -> float | None:
    """Seconds ``pid``'s threads spent waiting on a run queue so far."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[1])
    except OSError:
        return None
    return total / 1e9


def processes(root: str) -> dict[str, int]:
    """Name → pid of the stack's processes and the checkout's other workers."""
    with open(os.path.join(root, ".streamrec/stack.json")) as fh:
        out = {p["name"]: int(p["pid"]) for p in json.load(fh)["processes"].values()}
    known = set(out.values())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in known:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if root in cmd and " worker" in cmd and "python" in cmd and "bench" not in cmd:
            out[f"worker-{entry}"] = int(entry)
    return out


def main() -> None:
    """Sample for ``argv[1]`` seconds."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    root = os.getcwd()
    last: dict[str, float] = {}
    t_last = time.monotonic()
    end = t_last + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        now = time.monotonic()
        row: dict[str, float] = {}
        try:
            procs = processes(root)
        except FileNotFoundError:  # the stack went down: nothing left to sample
            break
        for name, pid in procs.items():
            for label, value in ((name, cpu_s(pid)), (f"{name}~wait", runq_wait_s(pid))):
                if value is None:
                    continue
                if label in last and value >= last[label]:  # a thread's exit lowers sums
                    row[label] = round((value - last[label]) / (now - t_last), 3)
                last[label] = value
        t_last = now
        print(json.dumps({"t": round(time.time(), 1), "load": os.getloadavg()[0], **row}),
              flush=True)


if __name__ == "__main__":
    main()
