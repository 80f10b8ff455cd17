"""Redis memory against ``maxmemory``, on one Redis and on a Redis Cluster: the alert of
``streamrec status`` and of the API's ``/metrics`` follows the fullest master (each one
refuses writes to its own slots at its own ``maxmemory``), whichever master that is --
not the sum over the masters, and not whichever node a client happens to ask."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from core.pipeline_status import PipelineProbe
from core.redis_client import memory_info, memory_info_async, sync_client
from core.settings import Settings
from tests.integration.api.app_client import running

pytestmark = pytest.mark.integration


def _masters(client: Any) -> list[Any]:
    """Each master as a one-node target (``None``: the one standalone Redis)."""
    import redis

    if isinstance(client, redis.RedisCluster):
        return client.get_primaries()
    return [None]


@contextmanager
def _nearly_full(client: Any, node: Any) -> Iterator[None]:
    """``node``'s ``maxmemory`` just above what it uses (95 % full), then restored."""
    target = {} if node is None else {"target_nodes": node}
    before = client.config_get("maxmemory", **target)["maxmemory"]
    used = int(client.info("memory", **target)["used_memory"])
    client.config_set("maxmemory", int(used / 0.95), **target)
    try:
        yield
    finally:
        client.config_set("maxmemory", before, **target)


async def _alert_metric(settings: Settings) -> str:
    async with running(settings) as api:
        body = (await api.get("/metrics")).text
    [line] = [x for x in body.splitlines() if x.startswith("streamrec_redis_memory_alert ")]
    return line.split()[1]


def test_the_alert_follows_the_fullest_master(either_redis: Settings) -> None:
    settings = either_redis
    client = sync_client(settings, decode_responses=True)
    try:
        masters = _masters(client)
        with PipelineProbe(settings) as probe:
            assert probe.redis_status()["redis_memory_alert"] is False
            for node in masters:
                with _nearly_full(client, node):
                    status = probe.redis_status()
                    assert status["redis_memory_alert"] is True, node
                    assert status["redis_memory_ratio"] >= 0.9
                    summary = memory_info(client)
                    assert summary["ratio"] >= 0.9
                    assert status["redis_maxmemory_bytes"] == summary["maxmemory"]
                    assert asyncio.run(_alert_metric(settings)) == "1.0", node
            assert probe.redis_status()["redis_memory_alert"] is False
    finally:
        client.close()
    assert asyncio.run(_alert_metric(settings)) == "0.0"


def test_memory_is_summed_over_the_masters(either_redis: Settings) -> None:
    from core.redis_client import async_client

    client = sync_client(either_redis, decode_responses=True)
    try:
        per_node = [client.info("memory", **({} if n is None else {"target_nodes": n}))
                    for n in _masters(client)]
        summary = memory_info(client)
    finally:
        client.close()
    assert summary["maxmemory_policy"] == per_node[0]["maxmemory_policy"]
    assert summary["maxmemory"] == sum(int(i["maxmemory"]) for i in per_node)
    # used memory moves a little between two reads: compare within 5 %
    assert abs(summary["used_memory"] - sum(int(i["used_memory"]) for i in per_node)) < (
        0.05 * summary["used_memory"])

    async def from_api_client() -> dict[str, Any]:
        aclient = async_client(either_redis, decode_responses=True)
        try:
            return await memory_info_async(aclient)
        finally:
            await aclient.aclose()

    seen = asyncio.run(from_api_client())
    assert seen["maxmemory"] == summary["maxmemory"]
    assert abs(seen["used_memory"] - summary["used_memory"]) < 0.05 * summary["used_memory"]
