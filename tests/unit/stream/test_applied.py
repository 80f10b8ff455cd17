"""The applied-offset bookkeeping of stream/applied.py, on plain objects."""

from __future__ import annotations

from types import SimpleNamespace

from stream.applied import offset_spans


def test_spans_per_partition() -> None:
    msgs = [SimpleNamespace(partition=p, offset=o) for p, o in
            ((0, 7), (1, 3), (0, 5), (0, 9), (1, 4))]
    assert offset_spans(msgs) == {0: (5, 10), 1: (3, 5)}
    assert offset_spans([]) == {}


def test_out_of_memory_is_told_apart() -> None:
    from redis.exceptions import ConnectionError, OutOfMemoryError, ResponseError

    from stream.rebuild import out_of_memory

    assert out_of_memory(OutOfMemoryError("command not allowed when used memory > 'maxmemory'"))
    assert out_of_memory(ResponseError(
        "Error running script: OOM command not allowed when used memory > 'maxmemory'"))
    assert not out_of_memory(ResponseError("WRONGTYPE Operation against a key"))
    assert not out_of_memory(ConnectionError("refused"))
