"""Progress bars that stay readable in logs.

On a terminal a bar redraws in place; when stderr is a pipe or a file (CI, `make demo`
logs, `nohup`), every redraw becomes a new line, so the bar updates only every
``LOG_INTERVAL_S`` seconds there.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 10.0


def progress_bar(*, enabled: bool = True, mininterval: float = 0.5, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr: redrawn every ``mininterval`` s on a terminal, and at most
    every ``LOG_INTERVAL_S`` s when stderr is redirected (one line per update there)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        file=sys.stderr,
        disable=not enabled,
        mininterval=mininterval if interactive else max(mininterval, LOG_INTERVAL_S),
        dynamic_ncols=interactive,
        **kwargs,
    )


class StageBars:
    """One :func:`progress_bar` per stage of a long job, each closed when complete or as
    the next starts: call it as ``bars(stage, done, total)`` (the shape of
    ``stream.retrain.Progress``), and :meth:`close` it when the job ends. ``units``: the
    unit of each stage's count."""

    def __init__(self, units: dict[str, str], *, enabled: bool = True) -> None:
        self.units = units
        self.enabled = enabled
        self._stage: str | None = None
        self._bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` in ``stage``: a new stage closes the previous bar, and a
        bar closes once ``done`` reaches ``total`` (so its time is the stage's own)."""
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = progress_bar(total=total, unit=self.units.get(stage, "it"),
                                     desc=stage, enabled=self.enabled)
        bar = self._bar
        if bar is None:  # this stage's bar is complete
            return
        bar.update(done - bar.n)
        if 0 < total <= done:
            self.close()

    def close(self) -> None:
        """Close the open bar, if any (its last state stays on the screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
