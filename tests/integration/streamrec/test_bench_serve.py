"""``streamrec bench serve --live-writes`` on a real Redis: its writer rewrites personal
lists, popular and trending with the loader's own format, keys and commands, at the rate
asked, and a tiny run reports the writer's rate, its CPU and what the near cache
received."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.bench.live_writes import events_written, run_writer
from streamrec.bench.serve_data import load_data

pytestmark = pytest.mark.integration


def test_the_writer_rewrites_lists_popular_and_trending_as_the_loader_wrote_them(
        settings: Settings, tmp_path: Path) -> None:
    k = RedisKeys()
    load_data(settings.redis_url, 4, 30)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        before = {u: client.get(k.user_recs(f"u{u}")) for u in range(4)}
        popular = sum(score for _, score in client.zrange(k.popular, 0, -1, withscores=True))
        trending = client.zrange(k.trending, 0, -1, withscores=True)
        spec = {"redis_url": settings.redis_url, "rate": 40, "users": 4, "items": 30,
                "count_path": str(tmp_path / "count"), "seed": 2}
        # 3 batches of 40/10 events: 12 lists rewritten, popular +1 per event
        assert run_writer(spec, batches=3) == 12
        assert events_written(spec["count_path"]) == 12
        after = {u: client.get(k.user_recs(f"u{u}")) for u in range(4)}
        assert any(after[u] != before[u] for u in range(4))
        for u in range(4):  # the worker's blended format, whoever wrote it last
            assert after[u] is not None
            doc, old = orjson.loads(after[u]), orjson.loads(before[u])  # type: ignore[arg-type]
            assert doc.keys() == old.keys()
        new_popular = client.zrange(k.popular, 0, -1, withscores=True)
        assert len(new_popular) == 30
        assert sum(score for _, score in new_popular) == pytest.approx(popular + 12)
        new_trending = client.zrange(k.trending, 0, -1, withscores=True)
        assert [m for m, _ in sorted(new_trending)] == [m for m, _ in sorted(trending)]
        assert new_trending != trending
    finally:
        client.close()


def test_a_tiny_run_with_live_writes_reports_the_writer(settings: Settings,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    done = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "bench", "serve", "--redis-url",
         settings.redis_url, "--users", "20", "--items", "50", "--rates", "50",
         "--duration", "0.5", "--warmup", "0", "--live-writes", "30", "--out", str(out)],
        cwd=tmp_path, env=env_for_child(settings), capture_output=True, text=True,
        timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Live writes, 30 events/s offered" in done.stdout
    report = json.loads(out.read_text())
    assert report["live_writes"]["rate"] == 30 and report["live_writes"]["achieved_eps"] > 0
    for target in ("api", "bare"):
        phase = report[target]["max"]
        assert phase["live_writes_eps"] >= 0 and "writer" in phase["cpu_us_per_request"]
    assert isinstance(report["api"]["max"]["near_cache_invalidations"], int)
    assert report["api"]["max"]["near_cache_flushes"] >= 0
