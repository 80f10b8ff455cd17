"""The worker's scheduled retrain, in a process of its own at a lower CPU priority.

A retrain reads the whole log, fits ALS and writes every item's similar list: seconds to
minutes of CPU. Run in a thread of the worker it held the interpreter lock the stream
needed (a backlog of 100,000 events drained at ~1,100 events/s while retrains ran,
issue 14); as its own process under ``nice`` (``Settings.retrain_nice``) it takes the
cores the stream leaves idle, and ALS may use them all.

:func:`run_retrain_process` starts ``python -m stream.trainer`` with the worker's
settings in its environment and waits for it; the child runs
:func:`stream.retrain.train_and_publish` and prints its result as one JSON line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

import orjson

from core.settings import Settings, env_for_child

log = logging.getLogger("streamrec.worker")

#: Exit codes of the child: published, too few events, another retrain holds the lock.
EXIT_OK, EXIT_NOT_ENOUGH, EXIT_BUSY = 0, 3, 4
#: Return codes of a child stopped by SIGTERM or SIGINT: by the signal itself (before
#: its handler was set) or through :func:`_exit_on_term`.
STOPPED = frozenset({-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM,
                     128 + signal.SIGINT})


class RetrainFailed(RuntimeError):
    """The retrain process ended without publishing a model."""


class RetrainStopped(RetrainFailed):
    """The retrain process was stopped by SIGTERM or SIGINT: the worker (its process
    group) is being stopped, e.g. by ``streamrec down`` or ``up --workers N``."""


async def run_retrain_process(settings: Settings) -> dict[str, Any] | None:
    """Retrain in a niced child process; the published result, or None when it was
    skipped (too few events, another retrain running). Raises :class:`RetrainFailed`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream.trainer", env=env_for_child(settings),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode in (EXIT_NOT_ENOUGH, EXIT_BUSY):
        return None
    if proc.returncode in STOPPED:
        raise RetrainStopped(f"retrain process stopped by signal {abs(proc.returncode) % 128}")
    if proc.returncode != EXIT_OK:
        raise RetrainFailed(f"retrain process exited with {proc.returncode}")
    lines = out.decode(errors="replace").strip().splitlines()
    result: dict[str, Any] = orjson.loads(lines[-1])
    return result


def main() -> int:
    """The child: train on the whole log with every core, publish, print the result."""
    from core.logging_setup import configure_logging
    from core.settings import get_settings
    from stream.retrain import NotEnoughData, RetrainBusy, train_and_publish

    settings = get_settings()
    configure_logging(settings.log_level)
    # Stopping the worker signals its process group, this child too: exit through the
    # retrain's ``finally`` so its lock goes with it (killed outright, the lock stayed for
    # its hour-long TTL and every retrain meanwhile, `streamrec train` too, was "busy").
    signal.signal(signal.SIGTERM, _exit_on_term)
    if settings.retrain_nice:
        os.nice(settings.retrain_nice)  # the stream keeps the CPU it needs
    try:
        result = train_and_publish(settings, wait_live_s=0, threads=0)
    except NotEnoughData as exc:
        log.info("scheduled retrain skipped: %s", exc)
        return EXIT_NOT_ENOUGH
    except RetrainBusy as exc:
        log.info("scheduled retrain skipped: %s", exc)
        return EXIT_BUSY
    sys.stdout.write(orjson.dumps(result.to_dict()).decode() + "\n")
    return EXIT_OK


def _exit_on_term(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
