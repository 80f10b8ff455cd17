"""The near cache's bound: a field of the settings.

A base class of :class:`core.settings.Settings` (the one settings object every process
reads, prefix ``STREAMREC_``), kept apart so that module stays within its size; nothing
reads this class on its own. What the near cache is and why: ``api.near_cache``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.limits import SERVE_CACHE_ENTRIES


class ServeCacheSettings(BaseSettings):
    """The near-cache field of :class:`core.settings.Settings`."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    serve_cache_entries: int = Field(
        SERVE_CACHE_ENTRIES, ge=0, le=10_000_000, description="served lists each API "
        "process keeps while Redis reports every write to what they read (about 3.7 KB "
        "per 10-item list; tracking rests after 30 s without a list); 0 = off"
    )
