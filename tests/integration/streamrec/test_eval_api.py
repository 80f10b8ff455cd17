"""``streamrec eval --via-api`` on real servers: a planted dataset, posted through the API,
trained with ``streamrec train`` and read back per user through the API.

Users only touch items of their own group, and the biggest group dominates the counts, so
a collaborative model finds each user's group while popularity cannot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from core.net import free_port
from core.settings import Settings, env_for_child
from recommender.evaluation.events import prepare_events
from streamrec.eval.via_api import run_via_api
from streamrec.stack.servers import spawn, stop_pid

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

GROUPS, ITEMS_PER_GROUP, USERS_PER_GROUP, PER_USER = 5, 12, 12, 8
TRACK, READ = "track-key-01234567", "read-key-012345678"


def planted(seed: int = 0) -> list[dict[str, Any]]:
    """Timed view events: each user views random items of its own group."""
    rng = np.random.default_rng(seed)
    # ids are any text (API.md): "/", "?" and "#" must reach the API as one path segment
    users = [(f"u{g}/{j}?#" if j % 2 else f"u{g}-{j}", g) for g in range(GROUPS)
             for j in range(USERS_PER_GROUP * (3 if g == 0 else 1))]
    events = []
    n = 0
    for _ in range(PER_USER):
        for j in rng.permutation(len(users)):
            user, g = users[int(j)]
            events.append({"event_id": f"p{n}", "type": "view", "user_id": user,
                           "item_id": f"i{g}-{int(rng.integers(ITEMS_PER_GROUP))}",
                           "ts": 1_700_000_000.0 + n})
            n += 1
    return events


@pytest.fixture
def stack(settings: Settings, start_worker: Callable[..., Any], tmp_path: Any
          ) -> Iterator[Settings]:
    """A worker and an API process (with keys) on the test's servers."""
    s = settings.model_copy(update={"api_port": free_port(), "tracking_keys": TRACK,
                                    "read_keys": READ, "retrain_interval_s": 0.0})
    start_worker(retrain_interval_s=0.0)
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=tmp_path / "api.log",
                env=env_for_child(s))
    try:
        yield s
    finally:
        stop_pid(api.pid)


def test_via_api_scores_the_served_lists_and_the_model_finds_the_groups(
        stack: Settings) -> None:
    events = prepare_events(planted())
    split_ts = events[int(0.75 * len(events))]["ts"]
    report = run_via_api(events, split_ts, stack, start_stack=False, echo=lambda _l: None)
    results = report["results"]
    served = results["streamrec API (served lists)"]
    assert served["users"] > 50
    assert report["info"]["train_events"] == sum(1 for e in events if e["ts"] < split_ts)
    assert "is live" in report["info"]["train"]
    assert report["info"]["sweep_wait_s"] >= 0  # the workers finished their sweep first
    # Each user's next items are in its own group: the served lists find them, popularity
    # (dominated by group 0) mostly cannot.
    assert served["hr@10"] > 0.8
    assert results["popularity"]["hr@10"] < served["hr@10"] - 0.2
    assert results["ALS (in-process retrain)"]["hr@10"] > 0.8
