"""Apache Kafka with a SASL_PLAINTEXT listener (PLAIN), as docs/security.md configures
it: the tools work with the right credentials, and the wrong ones are one line naming the
refused login, at once, instead of kafka-python's 30 s "Unable to bootstrap" (and a
traceback from the worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.connections import kafka_handshake_problem
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, stop_pid
from tests.conftest import java_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+"),
]

USER, PASSWORD, WRONG = "streamrec", "sasl-right-7c1e", "sasl-wrong-90ab"


@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Kafka node: PLAINTEXT for itself (and its readiness probe), SASL_PLAINTEXT
    with user ``streamrec`` for the clients under test; yields the SASL address."""
    from streamrec.stack.kafka_broker import start_kafka

    port, sasl_port, controller = free_port(), free_port(), free_port()
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{USER}="{PASSWORD}";')
    broker = start_kafka(tmp_path_factory.mktemp("sasl"), port=port,
                         controller_port=controller, extra={
        "listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                                f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
    })
    try:
        yield f"127.0.0.1:{sasl_port}"
    finally:
        broker.stop(timeout=30)


def _settings(bootstrap: str, password: str, tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                    kafka_sasl_mechanism="PLAIN", kafka_sasl_username=USER,
                    kafka_sasl_password=password, state_dir=tmp_path / ".streamrec",
                    redis_url=f"redis://127.0.0.1:{free_port()}/0")


def test_right_credentials_create_topics(sasl_bootstrap: str, tmp_path: Path) -> None:
    settings = _settings(sasl_bootstrap, PASSWORD, tmp_path)
    assert kafka_handshake_problem(settings) is None
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "topics", "create"],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "events: created" in done.stdout


@pytest.mark.parametrize("command", [["topics", "create"], ["worker"]])
def test_wrong_password_is_one_line_at_once(sasl_bootstrap: str, tmp_path: Path,
                                            command: list[str]) -> None:
    settings = _settings(sasl_bootstrap, WRONG, tmp_path)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", *command],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert time.monotonic() - started < 20  # not kafka-python's 30 s bootstrap timeout
    errors = [line for line in done.stderr.splitlines() if line.startswith("streamrec: ")]
    assert len(errors) == 1, done.stderr
    assert f"refused the PLAIN login of STREAMREC_KAFKA_SASL_USERNAME='{USER}'" in errors[0]
    assert "Traceback" not in done.stderr
    assert WRONG not in done.stdout + done.stderr


def test_status_names_a_refused_login_at_once(sasl_bootstrap: str, tmp_path: Path) -> None:
    """`streamrec status` waited ~33 s (kafka-python's bootstrap) before naming it."""
    settings = _settings(sasl_bootstrap, WRONG, tmp_path)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", "status", "--json"],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120)
    assert time.monotonic() - started < 20, "waited for kafka-python's bootstrap timeout"
    status = json.loads(done.stdout)
    assert "refused the PLAIN login" in status["errors"]["kafka"]
    assert WRONG not in done.stdout + done.stderr


def test_readyz_names_a_refused_kafka_login(sasl_bootstrap: str, tmp_path: Path) -> None:
    """``/readyz`` said "Kafka unreachable" for a wrong SASL password: it names it."""
    settings = _settings(sasl_bootstrap, WRONG, tmp_path).model_copy(
        update={"api_port": free_port()})
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=tmp_path / "api.log",
                env=env_for_child(settings))
    try:
        wait_for_port("127.0.0.1", settings.api_port, timeout=60, proc=api)
        deadline, message = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{settings.api_port}/readyz", timeout=10)
            assert answer.status_code == 503
            message = answer.json()["error"]["message"]
            if "refused" in message:
                break
            time.sleep(0.5)
    finally:
        stop_pid(api.pid)
    assert message.startswith(f"Kafka at {sasl_bootstrap} refused the PLAIN login of "
                              f"STREAMREC_KAFKA_SASL_USERNAME='{USER}'"), message
    assert "Redis unreachable" in message  # no Redis in this test: still said
    log = (tmp_path / "api.log").read_text()
    assert "refused the PLAIN login" in log and WRONG not in log


def test_untrusted_certificate_is_named(tmp_path: Path) -> None:
    """An SSL listener whose certificate the CA file does not vouch for: the TLS handshake
    fails before any Kafka request, so any TLS server shows it (here a TLS-only Redis)."""
    from tests.integration.streamrec.test_secured_redis import start_tls_redis

    server, stop = start_tls_redis(tmp_path)
    try:
        settings = Settings(kafka_bootstrap=server, kafka_security_protocol="SSL")
        problem = kafka_handshake_problem(settings)
        assert problem is not None and "TLS certificate is not trusted" in problem
        assert "STREAMREC_KAFKA_SSL_CAFILE" in problem
    finally:
        stop()
