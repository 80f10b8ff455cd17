"""stream.faust_compat: the version gate, the fetch-wait patch and the internals the worker
reads, each checked against the installed Faust (no broker: nothing here connects)."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

import stream.faust_compat as faust_compat
from stream.faust_compat import fetch_wait, internals, versions
from stream.faust_compat.versions import KNOWN_VERSIONS, UnknownFaustVersion, check_versions


def known() -> dict[str, str | None]:
    return {name: found[0] for name, found in KNOWN_VERSIONS.items()}


def test_the_installed_libraries_are_the_known_versions() -> None:
    # pyproject.toml pins exactly these; a different venv fails here first.
    assert versions.unknown_versions() == {}
    check_versions()


@pytest.mark.parametrize("name", sorted(KNOWN_VERSIONS))
def test_an_unknown_version_is_refused_with_the_known_ones_named(name: str) -> None:
    installed = {**known(), name: "99.0.0"}
    with pytest.raises(UnknownFaustVersion) as err:
        check_versions(installed=installed)
    message = str(err.value)
    assert f"{name} 99.0.0" in message
    assert all(f"{n} {v[0]}" in message for n, v in KNOWN_VERSIONS.items())
    assert "STREAMREC_FAUST_COMPAT_UNSAFE=1" in message


def test_a_missing_library_is_refused() -> None:
    with pytest.raises(UnknownFaustVersion, match=r"aiokafka \(not installed\)"):
        check_versions(installed={**known(), "aiokafka": None})


def test_the_unsafe_override_starts_anyway_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    check_versions(unsafe=True, installed={**known(), "faust-streaming": "0.16.0"})
    assert "faust-streaming 0.16.0" in caplog.text and "anyway" in caplog.text


def test_install_refuses_before_patching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "installed_versions",
                        lambda: {**known(), "mode-streaming": "0.8.0"})
    patched: list[str] = []
    from stream.faust_compat import commit_safety

    monkeypatch.setattr(commit_safety, "install", lambda: patched.append("commit"))
    monkeypatch.setattr(fetch_wait, "set_fetch_max_wait", lambda ms: patched.append("wait"))
    with pytest.raises(UnknownFaustVersion, match="mode-streaming 0.8.0"):
        faust_compat.install(fetch_max_wait_ms=20)
    assert patched == []
    faust_compat.install(fetch_max_wait_ms=20, unsafe=True)
    assert patched == ["commit", "wait"]


def test_the_worker_refuses_to_start_on_an_unknown_version(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import Settings
    from stream.worker import create_app

    monkeypatch.setattr(versions, "installed_versions",
                        lambda: {**known(), "aiokafka": "0.15.0"})
    with pytest.raises(UnknownFaustVersion, match="aiokafka 0.15.0"):
        create_app(Settings(redis_url="redis://127.0.0.1:1/0"))


def test_streamrec_worker_says_why_it_will_not_start(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(versions, "installed_versions",
                        lambda: {**known(), "faust-streaming": "0.16.0"})
    assert main(["worker"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("streamrec: error: ") and "faust-streaming 0.16.0" in err
    assert "faust-streaming 0.15.3" in err and "STREAMREC_FAUST_COMPAT_UNSAFE=1" in err


def worker_consumer(wait_ms: int | None) -> Any:
    """The aiokafka consumer Faust builds for a worker (built, never started)."""

    async def build() -> Any:
        if wait_ms is not None:
            fetch_wait.set_fetch_max_wait(wait_ms)
        app = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://",
                        web_enabled=False)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        wait = consumer._fetch_max_wait_ms
        await consumer.stop()
        return wait

    return asyncio.run(build())


def test_fetch_wait_sets_the_worker_consumers_fetch_wait() -> None:
    assert worker_consumer(37) == 37
    assert worker_consumer(None) == 37  # stays for consumers created later
    fetch_wait.set_fetch_max_wait(37)  # idempotent: wraps the original once
    assert inspect.unwrap(AIOKafkaConsumerThread._create_worker_consumer) is \
        fetch_wait._original_create


def test_aiokafka_still_reads_the_fetch_wait_where_the_patch_sets_it() -> None:
    # The patch sets the attribute after construction; aiokafka must read it in start().
    assert "self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=1500" in inspect.getsource(fetch_wait._original_create)


class Event:
    """What Faust's table code reads of an event: its message's topic and partition."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(topic="events", partition=partition)


def test_current_event_routes_a_table_writes_changelog_to_its_partition() -> None:
    async def write() -> list[tuple[int, Any]]:
        app = faust.App("compat-table", broker="kafka://127.0.0.1:1", store="memory://",
                        web_enabled=False)
        table = app.Table("h", default=None, partitions=4)
        sent: list[tuple[int, Any]] = []

        def send_changelog(partition: int, key: Any, value: Any, *args: Any) -> Any:
            sent.append((partition, key))
            return SimpleNamespace(message=SimpleNamespace(partition=partition))

        table.send_changelog = send_changelog  # type: ignore[method-assign]
        with internals.current_event(Event(3)):
            table["a"] = {"x": 1}
        with internals.current_event(Event(1)):
            table["b"] = {"x": 2}
        with pytest.raises(TypeError):  # outside: Faust refuses, nothing leaks out
            table["c"] = {"x": 3}
        return sent

    assert asyncio.run(write()) == [(3, "a"), (1, "b")]


def test_drop_local_forgets_a_key_without_a_changelog_record() -> None:
    async def drop() -> tuple[list[Any], dict[str, Any]]:
        app = faust.App("compat-drop", broker="kafka://127.0.0.1:1", store="memory://",
                        web_enabled=False)
        table = app.Table("h", default=None, partitions=4)
        sent: list[Any] = []

        def send_changelog(partition: int, key: Any, value: Any, *args: Any) -> Any:
            sent.append(key)
            return SimpleNamespace(message=SimpleNamespace(partition=partition))

        table.send_changelog = send_changelog  # type: ignore[method-assign]
        with internals.current_event(Event(2)):
            table["a"] = {"x": 1}
            table["b"] = {"x": 2}
        internals.drop_local(table, "a")
        internals.drop_local(table, "never")
        return sent, dict(table.items())

    assert asyncio.run(drop()) == (["a", "b"], {"b": {"x": 2}})


def test_read_offset_is_the_consumers_last_read_offset() -> None:
    tp = TP("events", 0)
    consumer = SimpleNamespace(_read_offset={tp: 41})
    assert internals.read_offset(consumer, tp) == 41
    assert internals.read_offset(consumer, TP("events", 1)) is None
    # The attribute is Faust's own (a defaultdict filled as messages are read).
    source = inspect.getsource(faust.transport.consumer.Consumer.__init__)
    assert "self._read_offset" in source


def test_the_producer_buffer_bound_is_the_class_attribute_the_conductor_reads() -> None:
    from faust.transport import conductor
    from faust.transport.producer import ProducerBuffer

    from stream.faust_compat import producer_ebb

    # The conductor waits for the buffer to "ebb" below max_messages before each message.
    assert "wait_until_producer_ebb" in inspect.getsource(conductor)
    assert "self.max_messages" in inspect.getsource(ProducerBuffer.wait_until_ebb)
    before = ProducerBuffer.max_messages
    try:
        producer_ebb.set_max_pending(16_000)
        assert ProducerBuffer.max_messages == 16_000
        producer_ebb.set_max_pending(5)  # never below Faust's own
        assert ProducerBuffer.max_messages == 100
    finally:
        ProducerBuffer.max_messages = before
