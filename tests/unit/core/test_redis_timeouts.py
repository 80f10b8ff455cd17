"""Guards that every Redis client of the worker and the CLI waits a bounded time for a
reply and a connection (``core.redis_timeouts``), whatever redis-py's own default is
(none before redis-py 8: a stopped redis-server held the worker's batch for ever), and
that a caller's own timeouts (the API's shorter ones, a probe's) still win."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.redis_client import async_client, sync_client
from core.settings import Settings

URL = "redis://127.0.0.1:1/0"


def kwargs(client: object) -> dict[str, object]:
    """The options the client's connections are made with (no connection is opened)."""
    return client.connection_pool.connection_kwargs  # type: ignore[attr-defined,no-any-return]


def test_clients_carry_the_settings_timeouts() -> None:
    s = Settings(redis_url=URL, redis_timeout_s=7.5, redis_connect_timeout_s=2.5)
    for client in (sync_client(s), async_client(s)):
        assert kwargs(client)["socket_timeout"] == 7.5
        assert kwargs(client)["socket_connect_timeout"] == 2.5


def test_a_callers_own_timeouts_win() -> None:
    s = Settings(redis_url=URL)
    client = sync_client(s, socket_timeout=1.0, socket_connect_timeout=0.5)
    assert kwargs(client)["socket_timeout"] == 1.0
    assert kwargs(client)["socket_connect_timeout"] == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_no_timeout_is_no_setting(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_REDIS_TIMEOUT_S", value)
    with pytest.raises(ValidationError):
        Settings()
