"""Write one leg's seconds per test file into ``tests/file_durations.json``.

Usage: ``python scripts/file_durations.py --leg tansu|kafka LOG [LOG ...]``, where each
LOG is the output of a pytest run of that leg with ``--durations=0`` (``make test``
prints only the 15 slowest: run the leg's pytest command with ``--durations=0`` and keep
its output). A file's seconds are the sum of its tests' setup, call and teardown; with
several logs, the mean. The other leg's table is kept. ``tests/file_order.py`` says what
the table is for.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tests" / "file_durations.json"
_LINE = re.compile(r"^\s*([0-9.]+)s (?:setup|call|teardown)\s+(\S+?)::")


def file_seconds(text: str) -> dict[str, float]:
    """Seconds per test file in one ``--durations=0`` output."""
    seconds: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            seconds[match.group(2)] += float(match.group(1))
    return dict(seconds)


def main(argv: list[str] | None = None) -> int:
    """Parse the logs, average per file, write the leg's table (sorted, rounded)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leg", choices=("tansu", "kafka"), required=True)
    parser.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = [file_seconds(log.read_text()) for log in args.logs]
    if not any(runs):
        print("no --durations=0 lines in the logs: nothing written", file=sys.stderr)
        return 1
    files = sorted({name for run in runs for name in run})
    table = json.loads(TABLE.read_text()) if TABLE.exists() else {}
    table[args.leg] = {name: round(sum(run.get(name, 0.0) for run in runs) / len(runs), 1)
                       for name in files}
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{len(files)} files of the {args.leg} leg written to {TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
