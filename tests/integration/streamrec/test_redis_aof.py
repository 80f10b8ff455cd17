"""The embedded Redis that keeps an append-only file (Kafka mode) rewrites it only once it
is large (``streamrec.stack.servers.AOF_REWRITE``): with Redis's own thresholds the held
rate of 2,000 events/s rewrote it every ~15 s, a fork writing the whole dataset each time."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from streamrec.stack.servers import AOF_REWRITE, start_redis

pytestmark = pytest.mark.integration


def test_a_durable_redis_rewrites_its_append_only_file_rarely(tmp_path: Path) -> None:
    server = start_redis(tmp_path, data_dir=tmp_path / "data")
    client = redis.Redis(host=server.host, port=server.port)
    try:
        config = client.config_get("auto-aof-rewrite-*") | client.config_get("appendonly")
        assert config["appendonly"] == "yes"
        assert int(config["auto-aof-rewrite-min-size"]) == 1024 ** 3 == _bytes(AOF_REWRITE[1])
        assert config["auto-aof-rewrite-percentage"] == AOF_REWRITE[3]
    finally:
        client.close()
        server.stop()


def _bytes(size: str) -> int:
    units = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
    return int(size[:-2]) * units[size[-2:]]
