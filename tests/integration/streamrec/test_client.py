"""The Python client (``streamrec.client``) against the real API: a worker and an API
process on real servers, shared by the module. Typed reads, catalog writes, identify,
errors, and ``streamrec load`` through it; the server-side "track in 5 minutes" of
docs/python-client.md runs here as written. A broker outage is in
test_client_outage.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core import kafka_tools
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from schemas import RecommendationList
from streamrec.client import (
    Client,
    DeliveryError,
    Forbidden,
    Unauthorized,
    ValidationFailed,
)
from streamrec.stack.servers import spawn, stop_pid
from tests.integration.conftest import WORKER_CMD, wait_worker_ready
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

TRACK, READ, ADMIN = "cli-track-0123456789", "cli-read-01234567890", "cli-admin-0123456789"
ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "python-client.md"




def start_api(settings: Settings, log: Path) -> Any:
    """An API process; returns it once it listens and says ready."""
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=log,
                env=env_for_child(settings))
    wait_for_port("127.0.0.1", settings.api_port, timeout=30, proc=api)
    return api


@pytest.fixture(scope="module")
def stack(infra: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[str, Settings]]:
    """A worker and an API process (keys of every role) on the session's servers, shared
    by this module's tests (each uses its own item ids)."""
    tmp = tmp_path_factory.mktemp("client")
    s = Settings(kafka_bootstrap=infra.kafka_bootstrap, redis_url=infra.redis_url,
                 topic_events="events-client", topic_catalog="catalog-client",
                 topic_dlq="events-dlq-client", app_id="streamrec-client", state_dir=tmp,
                 api_port=free_port(), tracking_keys=TRACK, read_keys=READ,
                 admin_keys=ADMIN, topic_partitions=2, retrain_interval_s=0)
    kafka_tools.create_topics(s)
    with redis.Redis.from_url(infra.redis_url) as rc:
        rc.flushdb()  # the session's Redis: earlier modules' items would be popular here
    worker = spawn(WORKER_CMD, log_path=tmp / "worker.log", env=env_for_child(s))
    api = start_api(s, tmp / "api.log")
    url = f"http://127.0.0.1:{s.api_port}"
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        with Client(url) as probe:
            wait_for(lambda: probe.ready().status == "ready", 30, "API ready")
        yield url, s
    finally:
        stop_pid(api.pid)
        stop_pid(worker.pid)


def views(admin: Client, item: str) -> int:
    """Exact views of ``item`` (GET /v1/admin/items/{item}/stats, through the client)."""
    return int(admin.request("GET", f"/v1/admin/items/{item}/stats",
                             role="admin").json()["views"])


def guide_snippet(heading: str) -> str:
    """The first ```python block after ``heading`` in docs/python-client.md."""
    text = GUIDE.read_text()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_client_against_the_api(stack: tuple[str, Settings]) -> None:
    url, _ = stack
    items = [{"item_id": f"c-{i}", "name": f"Item {i}", "price": 1.0 + i,
              "category": f"cat{i % 3}"} for i in range(12)]
    with Client(url, TRACK, READ, ADMIN, batch_size=25) as sr:
        assert sr.upsert_items(items).accepted == 12
        sent: Counter[str] = Counter()
        for user in range(10):
            for k in range(4):
                item = f"c-{(user + k) % 12}"
                sr.track("view", user_id=f"cu{user}", item_id=item)
                sent[item] += 1
        sr.track("view", anonymous_id="c-anon", item_id="c-1")
        sr.track("purchase", anonymous_id="c-anon", item_id="c-2", quantity=1, price=3.0)
        sent["c-1"] += 1
        assert sr.identify("c-anon", "c-known").accepted == 1  # delivers the events first
        sr.flush()
        assert sr.stats.events_delivered == 42 and sr.stats.events_failed == 0

        wait_for(lambda: all(views(sr, i) == n for i, n in sent.items()), 30,
                 "every view counted once")
        popular = sr.popular(5)
        assert isinstance(popular, RecommendationList) and len(popular.items) == 5
        ours = [item for item in popular.items if item.item_id.startswith("c-")]
        assert ours and all(item.name and item.price for item in ours)
        assert isinstance(sr.trending(5), RecommendationList)
        assert sr.similar("c-1", 5).source in ("similar", "popular", "trending", "fallback")
        # The anonymous purchase counts for the user after identify: never offered again.
        wait_for(lambda: "c-2" not in [i.item_id for i in sr.recommendations(
            "c-known", n=20, context="home").items], 15, "identify merged the history")
        listed = sr.recommendations("cu1", n=5, exclude=["c-1", "c-2"], category="cat0")
        assert {i.item_id for i in listed.items}.isdisjoint({"c-1", "c-2"})
        target = popular.items[0].item_id
        sr.delete_item(target)
        wait_for(lambda: target not in [i.item_id for i in sr.popular(12).items], 15,
                 "deleted item gone")
        with pytest.raises(ValidationFailed) as bad:
            sr.popular(0)
        assert bad.value.code == "validation_error" and bad.value.detail

    with Client(url, read_key="wrong") as stranger:
        with pytest.raises(Unauthorized) as refused:
            stranger.popular()
        assert refused.value.code == "unauthorized"
    with Client(url, tracking_key=READ) as mistaken:
        event_id = mistaken.track("view", user_id="x", item_id="c-1")
        with pytest.raises(DeliveryError) as failed:
            mistaken.flush()
        assert failed.value.event_ids == [event_id]
        assert isinstance(failed.value.errors[0], Forbidden)


def test_dot_ids_reach_their_own_endpoints(stack: tuple[str, Settings]) -> None:
    """``.`` and ``..`` are ids like any other (API.md: non-empty strings); httpx used to
    resolve them as dot segments (``/v1/users/../recommendations`` → 404)."""
    url, _ = stack
    with Client(url, TRACK, READ, ADMIN) as sr:
        for odd in (".", ".."):
            assert sr.upsert_item(odd, {"name": "dots", "price": 1.0}).ids == [odd]
            assert sr.recommendations(odd, n=3).items is not None
            assert sr.similar(odd, n=3, user_id=odd).items is not None
            assert sr.delete_item(odd).ids == [odd]


def test_a_catalog_over_the_body_cap_is_written_whole(stack: tuple[str, Settings]) -> None:
    """1500 items with ~1.2 KB of properties: sent as 1000 + 500 the first body was
    1.3 MB, and the API's 413 (it answers at once and closes the connection) came back as
    broken connections, retried, then PayloadTooLarge. The client now sizes each body."""
    url, _ = stack
    items = [{"item_id": f"big-{k}", "name": f"item {k}", "price": 1.0,
              "properties": {"description": "d" * 1200}} for k in range(1500)]
    with Client(url, admin_key=ADMIN) as sr:
        assert sr.upsert_items(items).accepted == 1500
        assert sr.stats.retries == 0 and "413" not in sr.stats.statuses
        wait_for(lambda: sr.request("GET", "/v1/admin/items/big-1499", role="admin"
                                    ).json().get("properties") == {"description": "d" * 1200},
                 30, "the last item written")


def test_a_script_that_never_closes_still_delivers_at_exit(stack: tuple[str, Settings]
                                                           ) -> None:
    """A Client left open when the interpreter exits is closed then (atexit): its queued
    events used to die silently with the daemon thread."""
    url, _ = stack
    script = ("from streamrec.client import Client\n"
              f"sr = Client({url!r}, {TRACK!r}, flush_interval_s=60)\n"
              "sr.track('view', user_id='exit-u', item_id='c-exit')\n")
    _exits_then_counted(script, stack, "c-exit", 1)


def _exits_then_counted(script: str, stack: tuple[str, Settings], item: str, n: int) -> None:
    """Run ``script`` in a fresh interpreter that exits without closing its Client;
    ``item`` then gets ``n`` views."""
    url, s = stack
    out = subprocess.run([sys.executable, "-c", script], env=env_for_child(s),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with Client(url, admin_key=ADMIN) as admin:
        wait_for(lambda: views(admin, item) == n, 30, f"{n} views of {item} sent before exit")


def test_a_client_dropped_unclosed_still_delivers_at_exit(stack: tuple[str, Settings]
                                                          ) -> None:
    """A Client made in a function and dropped without close: the exit hook held it
    weakly, so once the Client was collected its queued events died with its thread."""
    url, _ = stack
    script = ("import gc\n"
              "from streamrec.client import Client\n"
              "def send():\n"
              f"    sr = Client({url!r}, {TRACK!r}, flush_interval_s=60)\n"
              "    for _ in range(3):\n"
              "        sr.track('view', user_id='drop-u', item_id='c-dropped')\n"
              "send()\n"
              "gc.collect()\n")
    _exits_then_counted(script, stack, "c-dropped", 3)


def test_python_track_in_5_minutes_runs_as_documented(stack: tuple[str, Settings]) -> None:
    """The guide's two snippets, with their placeholders filled in, run unchanged."""
    url, _ = stack
    for heading in ("## Track in 5 minutes", "The same with asyncio"):
        code = guide_snippet(heading)
        assert "http://127.0.0.1:8000" in code and "YOUR_TRACKING_KEY" in code
        for placeholder, value in (("http://127.0.0.1:8000", url),
                                   ("YOUR_TRACKING_KEY", TRACK), ("YOUR_READ_KEY", READ),
                                   ("YOUR_ADMIN_KEY", ADMIN)):
            code = code.replace(placeholder, value)
        exec(compile(code, str(GUIDE), "exec"), {"__name__": "guide"})  # noqa: S102
    with Client(url, admin_key=ADMIN) as admin:
        wait_for(lambda: views(admin, "sku-1") == 1 and views(admin, "sku-2") == 1, 30,
                 "the snippets' views counted")
        stats = admin.request("GET", "/v1/admin/items/sku-1/stats", role="admin").json()
        assert stats["purchases"] == 1 and stats["cart_adds"] == 1


def test_load_goes_through_the_client_and_counts_once(stack: tuple[str, Settings],
                                                      tmp_path: Path) -> None:
    url, s = stack
    path = tmp_path / "events.jsonl"
    lines = [{"type": "view", "user_id": f"lu{k % 7}", "item_id": f"l-{k % 5}",
              "timestamp": "2026-01-02T03:04:05Z"} for k in range(60)]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    env = {**env_for_child(s), "STREAMREC_TRACKING_KEYS": TRACK}
    for _ in range(2):  # loading twice applies the file once (ids are file:line)
        out = subprocess.run([sys.executable, "-m", "streamrec.cli", "load", str(path),
                              "--api-url", url, "--batch", "25"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "loaded 60 events" in out.stdout, out.stdout + out.stderr
    with Client(url, admin_key=ADMIN) as admin:
        wait_for(lambda: all(views(admin, f"l-{i}") == 12 for i in range(5)), 30,
                 "each file line counted once")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "view", "user_id": "u"}\n')
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", "load", str(bad),
                          "--api-url", url], env=env, capture_output=True, text=True,
                         timeout=120)
    # a file whose every line is refused: exit 1, the file and line named on stderr
    assert out.returncode == 1 and "bad.jsonl" in out.stderr, out.stdout + out.stderr
    assert "line 1" in out.stderr and "item_id" in out.stderr
