"""Entity histories kept in a plain dict: the processor's history seam without Faust.

The worker keeps histories in a changelog-backed Faust table; the processor benchmark,
the row-list check and tests that drive ``EventProcessor`` directly use this instead
(Redis stays real in those tests).
"""

from __future__ import annotations

from typing import Any


class DictStore:
    """A ``stream.processor.HistoryStore`` over a plain dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, entity: str) -> dict[str, Any] | None:
        """The stored history of an entity, or None."""
        return self.data.get(entity)

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store an entity's history (the partition only matters to the Faust table)."""
        self.data[entity] = value

    def delete(self, entity: str, partition: int) -> None:
        """Forget an entity's history."""
        self.data.pop(entity, None)
