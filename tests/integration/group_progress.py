"""Where the worker group stands on the events topic, for tests waiting on it."""

from __future__ import annotations

from core import kafka_tools
from core.settings import Settings


def committed_to_end(settings: Settings) -> bool:
    """Whether the group has committed every non-empty ``events`` partition up to its
    end: the worker applied (and settled) all of it, not merely read it."""
    ends = kafka_tools.high_watermarks(settings, settings.topic_events)
    done = {tp.partition: off for tp, off in
            kafka_tools.committed_offsets(settings, settings.app_id).items()
            if tp.topic == settings.topic_events}
    return all(done.get(p, 0) >= end for p, end in ends.items() if end)
