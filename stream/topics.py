"""The topics the worker reads and writes, as raw bytes (validated at the agents' door
by ``stream.decode`` with the ``schemas`` models, not by Faust)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from core.settings import Settings


@dataclass(frozen=True)
class Topics:
    """The worker's topics."""

    #: Tracking events, keyed by entity (also where identified histories are forwarded).
    events: Any
    #: Catalog records, keyed by item.
    catalog: Any
    #: Rejected messages with the reason (``stream.decode.dead_letter_value``).
    dlq: Any


def define_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the events, catalog and dead-letter topics on ``app``."""

    def raw(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")

    return Topics(events=raw(settings.topic_events), catalog=raw(settings.topic_catalog),
                  dlq=raw(settings.topic_dlq))
