"""What the ``streamrec bench`` commands share: bounded option types, the report's last
lines (the command that reproduces it, the JSON's path) and writing that JSON whole.

Every numeric option of a bench is bounded: 0, a negative, a huge value or a word is one
argparse line (``streamrec bench serve: error: argument --rates: ...``) and exit code 2,
never a traceback, a division by zero or a run that waits forever (``--concurrency 0``
once did, ``--events 0`` waited 180 s for a bare Faust agent with nothing to read).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from streamrec.arg_types import number, whole
from streamrec.bench.burst_report import command_line, reproduce

__all__ = ["MAX_ENTITIES", "command_line", "finish", "number", "stops_on_sigterm",
           "whole", "write_json"]


#: The most shoppers, items or interactions a bench generates.
MAX_ENTITIES = 10_000_000


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` whole or not at all (a temporary file in the same
    directory, then a rename), creating the directories: an interrupted run never leaves
    half a JSON where the previous result was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(report, indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finish(report: dict[str, Any], out: Path) -> str:
    """Record the command in ``report``, write it to ``out``; the report's last lines
    (``command: ...`` and ``JSON: ...``) to print under its table."""
    report.setdefault("command", command_line())
    write_json(out, report)
    return reproduce(report, out)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stops_on_sigterm(run: Callable[[argparse.Namespace], int]
                     ) -> Callable[[argparse.Namespace], int]:
    """A bench's ``run`` that treats SIGTERM (``kill``, ``timeout``, a CI runner giving up)
    as Ctrl-C: its ``finally`` blocks stop the processes it started (``bench serve``'s
    redis-server, API and bare endpoint; ``bench ingest``'s extra workers and fresh
    stacks) and undo what it changed, where SIGTERM's default ended it on the spot and
    left them running."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        if threading.current_thread() is not threading.main_thread():
            return run(args)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return run(args)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def held_count(rate: float, hold: float) -> int:
    """Events of a held-rate phase: ``rate`` × ``hold``, at least one (a phase shorter
    than one event's interval sent none and reported no freshness at all)."""
    return max(1, int(rate * hold))
