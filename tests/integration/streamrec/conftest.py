"""Fixtures of the tests that drive ``streamrec up`` as a user does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import kafka_tools
from core.net import free_port
from core.settings import Settings, env_for_child
from tests.integration.streamrec.test_stack import Stack, stack_in


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own (directory, free API port); whatever it started is
    stopped at the end (Apache Kafka gets its controlled shutdown). test_stack.py's
    module-wide ``stack`` replaces it there."""
    with stack_in(tmp_path, down_timeout=120) as s:
        yield s


#: ``streamrec ARGS`` run in the test's directory, which must succeed; its stdout.
Cli = Callable[..., str]


@pytest.fixture
def replay_stack(settings: Settings, tmp_path: Path) -> tuple[Settings, Cli]:
    """The session's Kafka and Redis with the test's own API port and state directory
    (topics created), and a runner of ``streamrec`` commands there: for the tests that
    `up` a worker on the session's servers and replay under it."""
    s = settings.model_copy(update={"api_port": free_port(),
                                    "state_dir": tmp_path / ".streamrec"})
    kafka_tools.create_topics(s)

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "streamrec.cli", *args], cwd=tmp_path,
                              env=env_for_child(s), capture_output=True, text=True,
                              timeout=240, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return s, cli
