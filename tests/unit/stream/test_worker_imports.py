"""The worker's modules load no statistics library: ``scipy.stats`` (the experiment
report's chi-square test, :mod:`recommender.experiments`) is ~400 more modules, ~50 MB
more per worker process and ~30,000 more objects that each full garbage collection of
an untuned process (``scripts/bench_processor.py``) walks again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_worker_does_not_import_scipy_stats() -> None:
    code = ("import json, sys; import stream.agents, stream.processor, stream.experiments; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('scipy.stats'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
