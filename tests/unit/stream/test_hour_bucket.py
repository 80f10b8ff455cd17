"""The event-time hour of the dedupe sets (``seen:{tag}:{hour}``, ``expout:{x}:seen:{hour}``)
is computed in one place, ``stream.redis_writer.hour_of``: the worker's counts and the
experiment outcomes must put a redelivered event in the same hour."""

from __future__ import annotations

import ast
from pathlib import Path

from stream.redis_writer import hour_of

ROOT = Path(__file__).resolve().parents[3]


def test_the_hour_is_the_event_times_whole_hours() -> None:
    assert (hour_of(0.0), hour_of(3599.999), hour_of(3600.0), hour_of(7201.5)) == (0, 0, 1, 2)


def test_no_other_module_divides_a_timestamp_into_hours() -> None:
    found = []
    for package in ("core", "stream", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv)
                        and isinstance(node.right, ast.Constant) and node.right.value == 3600):
                    found.append(str(path.relative_to(ROOT)))
    assert found == ["stream/redis_writer.py"]  # hour_of itself
