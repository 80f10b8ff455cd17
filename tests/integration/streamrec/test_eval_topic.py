"""``streamrec eval --topic`` on a real broker: an events topic with nothing on it is
refused in one line that says so, not with the holdout protocol's "no user has 5 items"
(the quality doc's command, run on a fresh stack)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core import kafka_tools
from core.settings import Settings, env_for_child

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_eval_on_an_empty_topic_says_the_topic_is_empty(settings: Settings) -> None:
    kafka_tools.create_topics(settings)
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "eval", "--topic",
                           "--no-progress"], env=env_for_child(settings),
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert settings.topic_events in lines[0] and "no events" in lines[0], lines[0]
    assert "held out" not in lines[0]
