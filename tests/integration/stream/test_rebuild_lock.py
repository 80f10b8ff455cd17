"""One lock for wipes and rebuilds (``stream.applied.take_rebuild_lock``), with one expiry:
while one worker wipes a stale Redis, no other wipes or rebuilds, on a real Redis."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from stream import applied
from stream.applied import REBUILD_LOCK_TTL_S, recover_stale, take_rebuild_lock
from stream.rebuild import rebuild_if_flushed

pytestmark = pytest.mark.integration


async def test_a_held_lock_stops_a_second_wipe_and_the_rebuild_hook(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = async_client(settings)
    keys = RedisKeys()
    try:
        assert await take_rebuild_lock(client, keys)
        assert 0 < await client.ttl(keys.rebuild_lock) <= REBUILD_LOCK_TTL_S
        assert not await take_rebuild_lock(client, keys)
        monkeypatch.setattr(applied, "WAIT_FOR_WIPE_S", 0.3)
        assert not await recover_stale(client, keys, "a test", {})
        state = SimpleNamespace(redis=client, keys=keys, settings=settings)
        assert not await rebuild_if_flushed(state)  # type: ignore[arg-type]
        assert await client.exists(keys.rebuild_lock)  # still the first holder's
        await client.delete(keys.rebuild_lock)
        assert await recover_stale(client, keys, "a test", {})  # free: it wipes
        assert not await client.exists(keys.rebuild_lock)  # and releases
    finally:
        await client.delete(keys.rebuild_lock)
        await client.aclose()


async def test_a_long_rebuild_keeps_its_lock_and_lets_go_of_another_holders(
        settings: Any) -> None:
    """A rebuild of a long log outlasted the lock's expiry, and another worker then
    took the lock and rebuilt at the same time: the holder renews it until done, and
    stops renewing once the lock is someone else's."""
    import asyncio

    from stream.applied import keep_rebuild_lock

    client = async_client(settings)
    keys = RedisKeys()
    try:
        holder = await take_rebuild_lock(client, keys)
        assert holder is not None
        await client.expire(keys.rebuild_lock, 2)
        keeper = asyncio.create_task(keep_rebuild_lock(client, keys, holder, every_s=0.1))
        await asyncio.sleep(0.5)
        assert await client.ttl(keys.rebuild_lock) > 2  # renewed to the full expiry
        await client.set(keys.rebuild_lock, "another", ex=5)
        await asyncio.wait_for(keeper, 5)  # it stops renewing a lock not its own
        assert 0 < await client.ttl(keys.rebuild_lock) <= 5
    finally:
        await client.delete(keys.rebuild_lock)
        await client.aclose()


async def test_a_rebuild_that_lost_its_lock_leaves_the_new_holders_alone(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's lock expired mid-rebuild (the worker cut off from Redis longer than
    the expiry) and another worker took it: the first one's end released the lock
    anyway, and a third worker could rebuild alongside the second. A wipe's end the
    same."""
    from stream import rebuild as rebuild_module
    from stream.rebuild import RebuildResult

    client = async_client(settings)
    keys = RedisKeys()

    def taken_over(*_args: Any, **_kwargs: Any) -> RebuildResult:
        import redis as sync_redis

        other = sync_redis.Redis.from_url(settings.redis_url)
        other.set(keys.rebuild_lock, "another", ex=60)  # the first one's expired meanwhile
        other.close()
        return RebuildResult(messages=0, events=0, applied=0, seconds=0.0)

    monkeypatch.setattr(rebuild_module, "rebuild", taken_over)
    try:
        await client.delete(keys.sentinel, keys.rebuild_lock)
        state = SimpleNamespace(redis=client, keys=keys, settings=settings, model=None)
        assert await rebuild_if_flushed(state)  # type: ignore[arg-type]
        assert await client.get(keys.rebuild_lock) == b"another"

        await client.delete(keys.rebuild_lock)

        async def wipe_taken_over(*_args: Any) -> int:
            await client.set(keys.rebuild_lock, "another", ex=60)
            return 0

        monkeypatch.setattr(applied, "_wipe", wipe_taken_over)
        assert await recover_stale(client, keys, "a test", {})
        assert await client.get(keys.rebuild_lock) == b"another"
    finally:
        await client.delete(keys.rebuild_lock)
        await client.aclose()


def test_the_operators_rebuild_waits_its_turn(settings: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``streamrec rebuild`` replayed the whole log into Redis while a worker was doing
    the same after a flush (twice the load for the same state): it now takes the one
    lock, says so and exits 1 when another process holds it, and holds it meanwhile."""
    import subprocess
    import sys

    import redis as sync_redis

    from core.settings import env_for_child
    from stream import rebuild as rebuild_module
    from stream.rebuild import RebuildResult, rebuild_exclusive

    keys = RedisKeys()
    client = sync_redis.Redis.from_url(settings.redis_url)
    try:
        client.set(keys.rebuild_lock, "a-worker", ex=60)
        out = subprocess.run([sys.executable, "-m", "streamrec.cli", "rebuild"],
                             env=env_for_child(settings), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 1, out
        assert "another process is wiping or rebuilding Redis now" in out.stderr
        assert client.get(keys.rebuild_lock) == b"a-worker"
        client.delete(keys.rebuild_lock)

        held: list[bytes | None] = []

        def replay(*_args: Any, **_kwargs: Any) -> RebuildResult:
            held.append(client.get(keys.rebuild_lock))
            return RebuildResult(messages=0, events=0, applied=0, seconds=0.0)

        monkeypatch.setattr(rebuild_module, "rebuild", replay)
        assert rebuild_exclusive(settings) is not None
        assert held[0] is not None and held[0] != b"a-worker"
        assert not client.exists(keys.rebuild_lock)  # released
    finally:
        client.delete(keys.rebuild_lock)
        client.close()


def test_replay_rebuild_waits_its_turn_and_holds_the_lock_while_it_wipes(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``streamrec replay --rebuild`` reset the group and wiped Redis while a worker (or
    ``streamrec rebuild``) replayed the log into it: the wipe removed half of what the
    other rebuild wrote, and that one then marked Redis whole. It now takes the same
    lock: exit 1 naming the holder's work, nothing reset or wiped, and the lock held
    through the wipe, released after."""
    import subprocess
    import sys

    import redis as sync_redis

    from core.settings import env_for_child
    from streamrec.ops import replay

    keys = RedisKeys()
    client = sync_redis.Redis.from_url(settings.redis_url)
    try:
        client.set(keys.rebuild_lock, "a-worker", ex=60)
        client.set(keys.popular, "derived")
        out = subprocess.run([sys.executable, "-m", "streamrec.cli", "replay", "--rebuild",
                              "--no-wait"], env=env_for_child(settings),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, out
        assert "another process is wiping or rebuilding Redis now" in out.stderr
        assert client.get(keys.rebuild_lock) == b"a-worker"
        assert client.get(keys.popular) == b"derived"  # nothing wiped
        client.delete(keys.rebuild_lock)

        held: list[bytes | None] = []

        def wipe(*_args: Any, **_kwargs: Any) -> int:
            held.append(client.get(keys.rebuild_lock))
            return 0

        monkeypatch.setattr(replay, "wipe_derived", wipe)
        monkeypatch.setattr(replay, "clear_table", lambda _settings: 0)
        replay.rebuild(settings, from_ts=None, keep_state=False, echo=lambda _m: None,
                       wait=False)
        assert held and held[0] is not None and held[0] != b"a-worker"
        assert not client.exists(keys.rebuild_lock)  # released
    finally:
        client.delete(keys.rebuild_lock, keys.popular)
        client.close()
