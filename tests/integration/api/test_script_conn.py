"""The serving path's pipelined connection (api/script_conn.py) against real redis-servers:
replies reach the right callers, scripts reload after a flush, a lost connection is
reopened, and AUTH/SELECT from the URL are honoured."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from api.script_conn import ScriptConnection, supports
from core.redis_client import Lua, command
from streamrec.stack.servers import start_redis

pytestmark = pytest.mark.integration

ECHO = Lua("return {ARGV[1], redis.call('INCR', KEYS[1])}")


async def call(conn: ScriptConnection, *args: str, script: Lua = ECHO) -> Any:
    """One script call over the connection."""
    return (await conn.batch([script.call(["calls"], args)]))[0]


async def test_concurrent_calls_get_their_own_replies(tmp_path: Path) -> None:
    srv = start_redis(tmp_path)
    conn = ScriptConnection(f"redis://{srv.address}/0")
    try:
        replies = await asyncio.gather(*(call(conn, f"caller-{i}") for i in range(300)))
        assert [r[0] for r in replies] == [f"caller-{i}" for i in range(300)]
        assert sorted(r[1] for r in replies) == list(range(1, 301))
    finally:
        conn.close()
        srv.stop()


async def test_reloads_flushed_scripts_and_reopens_lost_connections(tmp_path: Path) -> None:
    srv = start_redis(tmp_path)
    admin = redis.Redis(host=srv.host, port=srv.port)
    conn = ScriptConnection(f"redis://{srv.address}/0")
    try:
        assert (await call(conn, "a"))[0] == "a"
        admin.script_flush()
        assert (await call(conn, "b"))[0] == "b"  # NOSCRIPT -> EVAL
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(RedisConnectionError):
            for _ in range(20):  # the kill may land between two calls
                await call(conn, "c")
                await asyncio.sleep(0.05)
        assert (await call(conn, "d"))[0] == "d"
        with pytest.raises(ResponseError):
            await call(ScriptConnection(f"redis://{srv.address}/0"),
                       script=Lua("return nosuch()"))
        # plain commands share the connection with the scripts, in order
        assert await conn.batch([command("SET", "k", "v"), command("GET", "k")]) == ["OK", "v"]
    finally:
        conn.close()
        admin.close()
        srv.stop()


async def test_lost_server_fails_fast_then_recovers(tmp_path: Path) -> None:
    srv = start_redis(tmp_path)
    host, port = srv.host, srv.port
    conn = ScriptConnection(f"redis://{srv.address}/0")
    try:
        assert (await call(conn, "a"))[0] == "a"
        srv.stop()
        with pytest.raises((RedisConnectionError, OSError)):
            await call(conn, "b")
        with pytest.raises((RedisConnectionError, OSError)):
            await call(conn, "c")  # refused while down
        srv = start_redis(tmp_path, port=port, host=host)
        assert (await call(conn, "d"))[0] == "d"
    finally:
        conn.close()
        srv.stop()


async def test_a_stalled_server_fails_the_calls_then_recovers(tmp_path: Path) -> None:
    srv = start_redis(tmp_path)
    conn = ScriptConnection(f"redis://{srv.address}/0")
    try:
        assert (await call(conn, "a"))[0] == "a"
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisConnectionError):
                await call(conn, "b")  # no reply: the connection's watchdog gives up
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        assert (await call(conn, "c"))[0] == "c"
    finally:
        conn.close()
        srv.stop()


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    srv = start_redis(tmp_path, password="s3cret")
    url = f"redis://:s3cret@{srv.address}/3"
    assert supports(url) and not supports("rediss://h:1/0")
    assert not supports("unix:///tmp/redis.sock")
    conn = ScriptConnection(url)
    check = redis.Redis(host=srv.host, port=srv.port, password="s3cret", db=3)
    try:
        assert await call(conn, "x") == ["x", 1]
        assert check.get("calls") == b"1"
        with pytest.raises(ResponseError):
            await call(ScriptConnection(f"redis://:wrong@{srv.address}/3"), "y")
    finally:
        conn.close()
        check.close()
        srv.stop()
