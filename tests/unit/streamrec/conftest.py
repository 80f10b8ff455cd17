"""Fixtures of the CLI's unit tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import get_settings


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No STREAMREC_* from the outside; state in a temp dir; fresh cached settings."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMREC_STATE_DIR", str(tmp_path / ".streamrec"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def no_stack(isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`isolated_env` with Kafka at the discard port: nothing may reach a server."""
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    get_settings.cache_clear()
