"""``streamrec replay --rebuild`` against a real worker, Tansu and redis-server: the events
it re-applies are catch-up, not freshness samples, even those received minutes ago
(``core.ops_records.replayed``); traffic after the replay is sampled again."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import redis

from core import kafka_tools
from core.ops_records import parse_replay_ends
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.ops.load import produce_direct, read_events
from streamrec.ops.status import collect_status
from streamrec.stack.probes import worker_heartbeats
from tests.integration.streamrec.conftest import Cli
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()


class Bar:
    """Stands in for tqdm (progress is not under test)."""

    def update(self, n: int) -> None:
        """Ignore progress."""


def recent_events(path: Path, n: int, start: float) -> None:
    """``n`` views and carts from ``start`` on, as a CSV ``streamrec load`` reads (event
    ids: the file's name and line)."""
    behaviors = ["pv"] * 4 + ["cart"]
    path.write_text("".join(f"{i % 30},{(i * 7) % 20},1,{behaviors[i % 5]},{int(start) + i}\n"
                            for i in range(n)))


def newest_beat(redis_url: str) -> dict[str, str]:
    """The heartbeat of the newest worker."""
    beats = worker_heartbeats(redis_url)
    return max(beats.values(), key=lambda b: float(b.get("started_at") or 0))


def worker_metrics(redis_url: str) -> dict[str, float]:
    """The freshness sample count and the catch-up counter of the newest worker."""
    beat = newest_beat(redis_url)
    url = f"http://127.0.0.1:{beat['metrics_port']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {"freshness": 0.0, "catch_up": 0.0}
    for line in text.splitlines():
        if line.startswith("streamrec_freshness_seconds_count"):
            out["freshness"] = float(line.split()[-1])
        elif line.startswith("streamrec_catch_up_events_total"):
            out["catch_up"] = float(line.split()[-1])
    return out


def test_replayed_events_are_catch_up_not_freshness(replay_stack: tuple[Settings, Cli],
                                                    tmp_path: Path) -> None:
    s, cli = replay_stack

    data = tmp_path / "shop.csv"
    recent_events(data, 150, time.time() - 300)  # received minutes ago: live traffic
    client = redis.Redis.from_url(s.redis_url)
    cli("up", "--timeout", "90")
    try:
        produce_direct(s, read_events(data), batch=30, progress=Bar())
        wait_for(lambda: collect_status(s)["lag"] == 0, 60, "the live traffic consumed")
        wait_for(lambda: worker_metrics(s.redis_url)["freshness"] > 0, 30,
                 "live traffic sampled")
        ends = kafka_tools.high_watermarks(s, s.topic_events)

        out = cli("replay", "--rebuild")
        assert "reprocessed" in out
        assert parse_replay_ends(client.hgetall(K.replay_ends)) == ends
        wait_for(lambda: collect_status(s)["lag"] == 0, 60, "the replay consumed")
        # Every list the replay rewrote is catch-up; the restarted worker sampled nothing.
        wait_for(lambda: worker_metrics(s.redis_url)["catch_up"] > 0, 30, "catch-up counted")
        # No list waits, and a heartbeat round (with its freshness publication) passed
        # since the catch-up was counted: the heartbeat 2 s on (one every 2 s).
        since = time.time()

        def idle_round() -> bool:
            beat = newest_beat(s.redis_url)
            return (beat.get("lists_waiting") == "0"
                    and float(beat.get("heartbeat_at") or 0) >= since + 2)
        wait_for(idle_round, 30, "an idle heartbeat round")
        assert worker_metrics(s.redis_url)["freshness"] == 0
        assert not client.hgetall(K.freshness_histogram)
        assert collect_status(s)["freshness"] is None

        # New traffic after the replay is sampled again.
        later = tmp_path / "later.csv"
        recent_events(later, 20, time.time())
        produce_direct(s, read_events(later), batch=10, progress=Bar())
        wait_for(lambda: worker_metrics(s.redis_url)["freshness"] > 0, 30,
                 "new traffic sampled")
        # A partition read past its mark drops it (a log lost later starts over at 0).
        grown = {p for p, end in kafka_tools.high_watermarks(s, s.topic_events).items()
                 if end > ends[p]}
        assert grown
        wait_for(lambda: not grown & set(parse_replay_ends(client.hgetall(K.replay_ends))),
                 30, "the marks of partitions read past them dropped")
    finally:
        client.close()
        cli("down")
