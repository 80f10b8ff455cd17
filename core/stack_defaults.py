"""What the embedded stack's state file (``.streamrec/stack.json``, written by
``streamrec up``) adds to the settings of a command run beside it: the Kafka and Redis
addresses (and Redis's mode) when they are empty, and the API's port when
``STREAMREC_API_PORT`` is not set, so a stack started on another port
(``STREAMREC_API_PORT=9000 streamrec up``) is found by a plain ``make demo``,
``streamrec simulate`` or ``streamrec bench freshness``; and which of the configured API
keys such a command sends (:func:`first_key`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from core.net import MAX_PORT

if TYPE_CHECKING:
    from core.settings import Settings

#: Where a command looks when neither the environment nor a state file names a server.
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def stack_defaults(settings: Settings) -> dict[str, object]:
    """The settings' updates from the state file (none when nothing is missing)."""
    given = settings.model_fields_set
    port_unset = "api_port" not in given
    if settings.kafka_bootstrap and settings.redis_url and not port_unset:
        return {}
    try:
        state = json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    updates: dict[str, object] = {}
    recorded_port = port_of(state.get("api_url"))
    if port_unset and recorded_port is not None:
        updates["api_port"] = recorded_port
    if not settings.kafka_bootstrap:
        updates["kafka_bootstrap"] = state.get("kafka_bootstrap") or DEFAULT_BOOTSTRAP
    if not settings.redis_url:
        updates["redis_url"] = state.get("redis_url") or DEFAULT_REDIS_URL
        if state.get("redis_mode") and "redis_mode" not in given:
            updates["redis_mode"] = state["redis_mode"]
    return updates


def port_of(url: object) -> int | None:
    """The port of a recorded ``http://host:port`` URL, or None."""
    if not isinstance(url, str):
        return None
    port = url.rpartition(":")[2].rstrip("/")
    return int(port) if port.isdigit() and 0 < int(port) <= MAX_PORT else None


def first_key(raw: str) -> str:
    """The key a command of ours sends for a role: the first of a comma-separated
    ``Settings.*_keys`` value, blanks skipped as the API skips them ("" for none)."""
    return next((key.strip() for key in raw.split(",") if key.strip()), "")
