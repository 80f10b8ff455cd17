"""``STREAMREC_REDIS_URL`` naming a Redis Cluster node needs ``STREAMREC_REDIS_MODE=cluster``
(docs/operations.md, "Redis Cluster"). Without it the API used to start, say it was ready
and answer every list from its fallback (each key on another node answered MOVED), and
the worker to fail on every batch: both now refuse to start and name the setting. The
reverse mistake (cluster mode on a standalone Redis) is named too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.connections import redis_handshake_problem
from core.net import free_port
from core.redis_client import seeds
from core.settings import Settings, env_for_child

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrec.cli", *args],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120)


def test_a_cluster_node_without_cluster_mode_is_refused(redis_cluster: str,
                                                        tmp_path: Path) -> None:
    one_node, _ = seeds(redis_cluster)  # what an operator copies from ElastiCache
    settings = Settings(redis_url=one_node, redis_mode="standalone",
                        state_dir=tmp_path / ".streamrec", api_port=free_port(),
                        kafka_bootstrap=f"127.0.0.1:{free_port()}")
    problem = redis_handshake_problem(settings)
    assert problem and "STREAMREC_REDIS_MODE=cluster" in problem
    assert redis_handshake_problem(settings, mode_only=True) == problem
    for command in ("api", "worker"):
        done = _cli(settings, command)
        assert done.returncode != 0 and "Traceback" not in done.stderr, command
        assert done.stderr.strip().splitlines()[-1] == f"streamrec: error: {problem}"

    fixed = settings.model_copy(update={"redis_mode": "cluster"})
    assert redis_handshake_problem(fixed) is None


def test_cluster_mode_on_a_standalone_redis_is_named(settings: Settings) -> None:
    wrong = settings.model_copy(update={"redis_mode": "cluster"})
    problem = redis_handshake_problem(wrong)
    assert problem and "STREAMREC_REDIS_MODE=standalone" in problem
    assert redis_handshake_problem(settings) is None
