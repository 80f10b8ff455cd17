"""What a table holds of a value its recovery restores.

Faust's in-memory store keeps each restored changelog value as the table's
``_to_value`` returns it (``Collection.apply_changelog_batch`` passes that method to
``Store.apply_changelog_batch``; Faust's own returns the JSON-decoded value as is). Both
a restart's recovery and a rebalance's takeover of a partition go through it, as do
standby replicas. :func:`set_restored_values` sets it for one table, so restored values
take the form the worker's own writes store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def set_restored_values(table: Any, convert: Callable[[Any], Any]) -> None:
    """Make ``table`` store ``convert(value)`` for each value its changelog recovery
    decodes (``None`` for a tombstone, which ``convert`` must give back unchanged)."""
    table._to_value = convert
