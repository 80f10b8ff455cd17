"""``streamrec train`` while the worker's scheduled retrain holds the lock: it waits for
that one to finish and then trains, instead of failing (the held-out check of issue 3
posts its events, then runs ``streamrec train``; by then the growth trigger has often
started a retrain of its own)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child, get_settings
from streamrec.cli import main
from tests.integration.stream.test_retrain_economy import produce

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    s = settings.model_copy(update={"retrain_min_events": 1})
    for name, value in env_for_child(s).items():
        if name.startswith("STREAMREC_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_train_waits_for_a_running_retrain(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from core import kafka_tools

    kafka_tools.create_topics(settings)
    produce(settings, 0, 20)
    _cli_env(monkeypatch, settings)
    client: Any = redis.Redis.from_url(settings.redis_url)
    lock = RedisKeys().train_lock
    client.set(lock, "the-scheduled-retrain", ex=60)
    release = threading.Timer(1.5, client.delete, args=(lock,))
    release.start()
    try:
        assert main(["train", "--timeout", "0"]) == 0, capsys.readouterr().err
        assert "model v" in capsys.readouterr().out
        client.set(lock, "the-scheduled-retrain", ex=60)  # held throughout: a clear error
        assert main(["train", "--timeout", "0", "--busy-wait", "1"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another retrain is running" in err
    finally:
        release.cancel()
        client.delete(lock)
        client.close()
        get_settings.cache_clear()


def test_train_without_a_worker_says_no_list_uses_it(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With the worker dead, ``train`` printed "model v… is live" at once (no heartbeat
    to wait for): nothing serves it until a worker starts, and the message says so."""
    from core import kafka_tools

    kafka_tools.create_topics(settings)
    produce(settings, 0, 20)
    _cli_env(monkeypatch, settings)
    try:
        assert main(["train", "--timeout", "0"]) == 0
        out, err = capsys.readouterr()
        assert "is published" in out and "is live" not in out
        assert "no worker is running" in err and "streamrec up" in err
        # no bars when not on a terminal (their labels: a stray thread's "--- Logging
        # error ---" traceback on a slow machine says "thread", "read" matched it)
        assert "read:" not in err and "fit:" not in err
    finally:
        get_settings.cache_clear()


def test_train_shows_its_progress_on_a_terminal(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``streamrec train`` printed nothing until it was done (minutes on a large log):
    on a terminal it shows the read (messages of the log) and the fit (ALS iterations)
    as progress bars on stderr; the result lines stay as they were."""
    import sys

    from core import kafka_tools

    kafka_tools.create_topics(settings)
    produce(settings, 0, 20)
    _cli_env(monkeypatch, settings)
    try:
        for stream in (sys.stdout, sys.stderr):  # capsys's: "terminals" from here on
            monkeypatch.setattr(stream, "isatty", lambda: True)
        assert main(["train", "--timeout", "0"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("model v") and out.count("\n") == 1
        messages = sum(kafka_tools.high_watermarks(settings, settings.topic_events).values())
        iterations = settings.als_iterations
        assert "read: 100%" in err and f" {messages}/{messages} " in err, err
        assert "fit: 100%" in err and f" {iterations}/{iterations} " in err, err
        # then writing the similar-item lists and the first users' lists (it was silent
        # from the fit's end to the result line)
        assert "similar: 100%" in err and "user lists: 100%" in err, err
        assert (err.index("read:") < err.index("fit:") < err.index("similar:")
                < err.index("user lists:") < err.index("no worker is running"))
        assert main(["train", "--timeout", "0", "--no-progress"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("model v") and "read:" not in err and "fit:" not in err
    finally:
        get_settings.cache_clear()


def test_train_shows_its_wait_for_a_retrain_and_for_the_workers(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The two waits of ``streamrec train`` were silent: for another retrain's lock
    (up to ``--busy-wait``) and for the workers to serve the new version (``--timeout``)."""
    import sys
    import time

    from core import kafka_tools

    kafka_tools.create_topics(settings)
    produce(settings, 0, 20)
    _cli_env(monkeypatch, settings)
    client: Any = redis.Redis.from_url(settings.redis_url)
    keys = RedisKeys()
    client.set(keys.train_lock, "the-scheduled-retrain", ex=60)
    release = threading.Timer(2.5, client.delete, args=(keys.train_lock,))
    # a worker whose heartbeat is fresh and that never takes the new version up
    client.hset(keys.worker("w-stuck"), mapping={"heartbeat_at": time.time() + 30,
                                                 "model_version": "v-old"})
    client.expire(keys.worker("w-stuck"), 60)
    release.start()
    try:
        for stream in (sys.stdout, sys.stderr):
            monkeypatch.setattr(stream, "isatty", lambda: True)
        assert main(["train", "--timeout", "1", "--busy-wait", "30"]) == 0
        out, err = capsys.readouterr()
        assert "is published" in out, (out, err)
        assert "wait for retrain:" in err, err
        assert "live:" in err and "0/1 " in err, err
        assert err.index("wait for retrain:") < err.index("read:") < err.index("live:")
    finally:
        release.cancel()
        client.delete(keys.train_lock, keys.worker("w-stuck"))
        client.close()
        get_settings.cache_clear()


def test_a_retrain_releases_only_its_own_lock(settings: Settings) -> None:
    """The release is one holder-checked step: a lock another process took after this
    one's expired stays (a GET then a DEL could delete it between the two)."""
    from stream.applied import release_lock_sync

    client: Any = redis.Redis.from_url(settings.redis_url)
    lock = RedisKeys().train_lock
    try:
        client.set(lock, "the-next-retrain", ex=60)
        release_lock_sync(client, lock, "an-expired-retrain")
        assert client.get(lock) == b"the-next-retrain"
        release_lock_sync(client, lock, "the-next-retrain")
        assert client.exists(lock) == 0
    finally:
        client.delete(lock)
        client.close()
