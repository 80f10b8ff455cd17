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
