"""A production-like Redis: TLS with a private CA, ``requirepass`` and the ACL user that
docs/security.md tells operators to create. The tools that probe Redis (``train``'s and
``replay``'s live-worker check, ``status``, ``up`` with an external Redis) must verify
the server with ``STREAMREC_REDIS_TLS_CA_FILE`` like every other client, and the
documented ACL must allow every command they send."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from redis.exceptions import RedisError

from core.connections import redis_handshake_problem
from core.net import free_port, wait_for_port
from core.pipeline_status import PipelineProbe
from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child, get_settings
from streamrec.stack.servers import redis_binary, spawn, stop_pid

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[3] / "docs" / "security.md"
USER, PASSWORD, ADMIN_PASSWORD = "streamrec", "acl-pw-4e2b9d77", "admin-pw-19c0aa31"


def documented_acl() -> str:
    """The rules after ``>PASSWORD`` in docs/security.md's ``ACL SETUSER`` example."""
    found = re.search(r"ACL SETUSER streamrec on >PASSWORD ([^`]+)`", DOCS.read_text())
    assert found, "docs/security.md no longer shows the ACL SETUSER example"
    return found.group(1).strip()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (directory / n for n in (
        "ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
         "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
         "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "1", "-extfile", ext, "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, cert, key


def start_tls_redis(directory: Path, acl: str = "") -> tuple[str, Callable[[], object]]:
    """A TLS-only redis-server with a certificate from a private CA (``directory /
    "ca.crt"``), passwords in its config file, not on its command line; its address and
    a function that stops it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    ca, cert, key = _certificates(directory)
    port = free_port()
    conf = directory / "redis.conf"
    conf.write_text("\n".join([
        "port 0", f"tls-port {port}", "bind 127.0.0.1", f"tls-cert-file {cert}",
        f"tls-key-file {key}", f"tls-ca-cert-file {ca}", "tls-auth-clients no",
        'save ""', "appendonly no", f"dir {directory}", f"requirepass {ADMIN_PASSWORD}",
        *([acl] if acl else []), ""]))
    proc = spawn([redis_binary(), str(conf)], log_path=directory / "redis.log")
    try:
        wait_for_port("127.0.0.1", port, timeout=20, proc=proc)
    except BaseException:
        stop_pid(proc.pid)
        raise
    return f"127.0.0.1:{port}", partial(stop_pid, proc.pid)


@pytest.fixture
def secured_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A TLS-only Redis with the documented ACL user; yields the ``rediss://`` URL of that
    user, with ``STREAMREC_REDIS_TLS_CA_FILE`` set for this process."""
    server, stop = start_tls_redis(tmp_path, f"user {USER} on >{PASSWORD} {documented_acl()}")
    try:
        monkeypatch.setenv("STREAMREC_REDIS_TLS_CA_FILE", str(tmp_path / "ca.crt"))
        get_settings.cache_clear()
        yield f"rediss://{USER}:{PASSWORD}@{server}/0"
    finally:
        get_settings.cache_clear()
        stop()


def test_probes_verify_with_the_configured_ca(secured_redis: str) -> None:
    """``worker_heartbeats`` (train's "is a worker running?", replay, ``up``) used to
    connect without the CA file: CERTIFICATE_VERIFY_FAILED after a model was published."""
    from streamrec.stack.probes import redis_reachable, worker_heartbeats

    settings = Settings(redis_url=secured_redis)
    client = sync_client(settings)
    client.hset(RedisKeys().worker("w1"), mapping={"pid": "1", "heartbeat_at": "1"})
    client.close()
    assert redis_reachable(secured_redis)
    assert set(worker_heartbeats(secured_redis)) == {"w1"}


def test_documented_acl_serves_status_and_metrics(secured_redis: str) -> None:
    """``status`` reads memory with ``INFO`` (so does the API's ``/metrics``): the ACL
    docs/security.md gives must allow it, or status shows no Redis state at all."""
    settings = Settings(redis_url=secured_redis)
    with PipelineProbe(settings) as probe:
        status = probe.redis_status()
    assert isinstance(status["redis_memory_bytes"], int) and status["redis_memory_bytes"] > 0


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrec.cli", *args],
                          env=env_for_child(settings), capture_output=True, text=True,
                          timeout=120)


def test_wrong_password_is_named_not_unreachable(secured_redis: str, tmp_path: Path) -> None:
    """A wrong password used to read "cannot reach Redis ... run `streamrec up`" (the
    CLI tested ConnectionError first; AuthenticationError is one), and the worker
    logged an agent crash with a traceback every few seconds, for ever."""
    from streamrec.cli import _user_error

    wrong = secured_redis.replace(PASSWORD, "not-the-password-1")
    settings = Settings(redis_url=wrong, state_dir=tmp_path / ".streamrec",
                        kafka_bootstrap=f"127.0.0.1:{free_port()}")
    problem = redis_handshake_problem(settings)
    assert problem and problem.startswith("Redis refused the credentials in STREAMREC_REDIS_URL")
    with pytest.raises(RedisError) as caught:
        sync_client(settings).ping()
    assert _user_error(caught.value) == problem
    done = _cli(settings, "worker")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"streamrec: error: {problem}"
    assert "not-the-password-1" not in done.stderr + done.stdout


def test_untrusted_certificate_is_named(secured_redis: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=secured_redis, redis_tls_ca_file="",
                        state_dir=tmp_path / ".streamrec")
    problem = redis_handshake_problem(settings)
    assert problem and "TLS certificate is not trusted" in problem
    assert "STREAMREC_REDIS_TLS_CA_FILE" in problem
    status = json.loads(_cli(settings, "status", "--json").stdout)
    assert status["errors"]["redis"] == problem


def test_readyz_names_a_refused_login(secured_redis: str, tmp_path: Path) -> None:
    """``/readyz`` said "Redis unreachable" for a wrong password: it names the refusal."""
    wrong = secured_redis.replace(PASSWORD, "not-the-password-2")
    settings = Settings(redis_url=wrong, api_port=free_port(), state_dir=tmp_path / "st",
                        kafka_bootstrap=f"127.0.0.1:{free_port()}")
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=tmp_path / "api.log",
                env=env_for_child(settings))
    try:
        wait_for_port("127.0.0.1", settings.api_port, timeout=60, proc=api)
        answer = httpx.get(f"http://127.0.0.1:{settings.api_port}/readyz", timeout=10)
    finally:
        stop_pid(api.pid)
    assert answer.status_code == 503
    message = answer.json()["error"]["message"]
    assert message == ("Kafka unreachable; Redis refused the credentials in "
                       "STREAMREC_REDIS_URL: invalid username-password pair or user is "
                       "disabled.")
    assert "not-the-password-2" not in (tmp_path / "api.log").read_text()
