"""``streamrec demo`` (what ``make demo`` runs) through the CLI, as README has a newcomer
run it: a second time on a stack that is still up, where the worker's own scheduled
retrain may hold the training lock just when the demo trains."""

from __future__ import annotations

import pytest
import redis

from core.redis_keys import RedisKeys
from tests.integration.streamrec.test_stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_demo_waits_for_a_running_retrain_instead_of_a_traceback(stack: Stack) -> None:
    stack.up()
    client = redis.Redis.from_url(stack.state()["redis_url"])
    try:
        # a retrain of the worker's, as the growth trigger starts one after traffic
        assert client.set(RedisKeys().train_lock, "worker:scheduled", nx=True, ex=8)
        res = stack.cli("demo", "--duration", "2", "--rate", "100", timeout=180)
    finally:
        client.close()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert " live: " in res.stdout, res.stdout
