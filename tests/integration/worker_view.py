"""What a running worker says about itself, read the way ``streamrec status`` and
Prometheus read it: its heartbeat in Redis (found by pid) and its own ``/metrics``. For
tests that wait for a worker's state instead of sleeping a guessed time."""

from __future__ import annotations

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from core.redis_keys import RedisKeys
from core.settings import Settings


def heartbeat(settings: Settings, pid: int) -> dict[str, str]:
    """The newest heartbeat of the worker with ``pid`` (empty before its first)."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        for key in client.scan_iter(RedisKeys().worker_pattern):
            beat = client.hgetall(key)
            if beat.get("pid") == str(pid):
                return beat
        return {}
    finally:
        client.close()


def partitions(settings: Settings, pid: int) -> set[int]:
    """The events partitions the worker with ``pid`` held at its last heartbeat."""
    listed = heartbeat(settings, pid).get("partitions", "")
    return {int(p) for p in listed.split(",") if p}


def metric(settings: Settings, pid: int, name: str) -> float | None:
    """The worker's sample ``name`` (summed over labels) from its ``/metrics``; None
    before its first heartbeat or when it does not answer."""
    port = heartbeat(settings, pid).get("metrics_port")
    if not port or port == "0":
        return None
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return None
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)
