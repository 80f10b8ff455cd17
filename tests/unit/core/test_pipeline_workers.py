"""Worker entries of the pipeline status (core/pipeline_status.py): a heartbeat written
after the status read its clock (the worker beats while `streamrec status` reads Redis)
is 0 s old, never negative ("-0s ago" in `streamrec status`)."""

from __future__ import annotations

from core.pipeline_status import _workers


def test_a_heartbeat_newer_than_the_read_is_zero_seconds_old() -> None:
    now = 1_000_000.0
    beats = {"w-1": {"heartbeat_at": repr(now + 0.4), "ready": "1"},
             "w-2": {"heartbeat_at": repr(now - 3.0), "ready": "1"}}
    ages = {w["id"]: w["heartbeat_age_s"] for w in _workers(beats, now)}
    assert ages == {"w-1": 0.0, "w-2": 3.0}
