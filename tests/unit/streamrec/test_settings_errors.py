"""Odd configuration at startup: every process command fails fast with one line on stderr
naming the STREAMREC_* variable, a non-zero exit code and no traceback (run as a user runs
it, in a subprocess). Before, an unknown log level crashed `api` with uvicorn's KeyError, a
malformed Redis URL or Kafka address crashed `api` and `worker` at connect time, a state
directory that is a file crashed `up` and `worker`, and a taken port gave `api` uvicorn's
log lines (or a traceback with SO_REUSEPORT)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = ["up", "worker", "api", "status", "config"]


def _run(tmp_path: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``streamrec ARGV`` with no outside STREAMREC_* but ``env``, its state under tmp."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMREC_")}
    clean.update({"PYTHONPATH": str(ROOT), "STREAMREC_STATE_DIR": str(tmp_path / "state"),
                  "STREAMREC_KAFKA_BOOTSTRAP": "127.0.0.1:9", **env})
    return subprocess.run([sys.executable, "-m", "streamrec.cli", *argv], env=clean,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def _one_line_naming(result: subprocess.CompletedProcess[str], variable: str) -> None:
    """The failure a user should see: one line on stderr naming ``variable``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("streamrec: error: ") and variable in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("STREAMREC_LOG_LEVEL", "LOUD", "'CRITICAL'"),
    ("STREAMREC_REDIS_URL", "foo://bar", "redis://"),
    ("STREAMREC_KAFKA_BOOTSTRAP", "::::", "host:port"),
])
def test_bad_setting_stops_every_command(tmp_path: Path, command: str, variable: str,
                                         value: str, allowed: str) -> None:
    result = _run(tmp_path, [command], **{variable: value})
    _one_line_naming(result, variable)
    assert allowed in result.stderr
    assert not (tmp_path / "state" / "logs").exists()  # nothing was started


@pytest.mark.parametrize("command", ["up", "worker", "api", "config"])
def test_state_dir_that_is_a_file(tmp_path: Path, command: str) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    result = _run(tmp_path, [command], STREAMREC_STATE_DIR=str(a_file))
    _one_line_naming(result, "STREAMREC_STATE_DIR")
    assert "is a file" in result.stderr


@pytest.mark.parametrize("command", ["up", "worker"])
def test_state_dir_that_cannot_be_created(tmp_path: Path, command: str) -> None:
    # /proc refuses new directories even to root
    result = _run(tmp_path, [command], STREAMREC_STATE_DIR="/proc/streamrec-no-such/state")
    _one_line_naming(result, "STREAMREC_STATE_DIR")


@pytest.mark.parametrize("reuse_port", ["false", "true"])
def test_api_port_in_use(tmp_path: Path, reuse_port: str) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = _run(tmp_path, ["api"], STREAMREC_API_PORT=port,
                      STREAMREC_API_REUSE_PORT=reuse_port)
    _one_line_naming(result, "STREAMREC_API_PORT")
    assert "in use" in result.stderr


def test_worker_metrics_port_in_use(tmp_path: Path) -> None:
    # the worker died with http.server's traceback (and `up` named no setting)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = _run(tmp_path, ["worker"],
                      STREAMREC_WORKER_METRICS_PORT=str(busy.getsockname()[1]))
    _one_line_naming(result, "STREAMREC_WORKER_METRICS_PORT")


@pytest.mark.parametrize("command", ["up", "api"])
@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])
def test_api_host_not_of_this_machine(tmp_path: Path, command: str, host: str) -> None:
    # `up` said the port was "in use by another program" and named only STREAMREC_API_PORT
    result = _run(tmp_path, [command], STREAMREC_API_HOST=host, STREAMREC_READ_KEYS="k",
                  STREAMREC_API_PORT=str(_free_port()))
    _one_line_naming(result, "STREAMREC_API_HOST")
    assert "in use" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_config_warns_of_a_variable_that_is_no_setting(tmp_path: Path) -> None:
    # a typo such as STREAMREC_API_PROT was ignored without a word
    result = _run(tmp_path, ["config"], STREAMREC_API_PROT="9000")
    assert result.returncode == 0
    assert result.stderr == "streamrec config: warning: STREAMREC_API_PROT is no setting " \
                            "(ignored)\n"
    assert "STREAMREC_API_PORT=8000" in result.stdout


def test_worker_metrics_host_not_of_this_machine(tmp_path: Path) -> None:
    # the metrics server binds STREAMREC_WORKER_METRICS_HOST (compose: 0.0.0.0, so that
    # Prometheus in another container can scrape it); an address not of this machine is
    # one line naming it, with the port left to pick (0) too
    result = _run(tmp_path, ["worker"], STREAMREC_WORKER_METRICS_HOST="192.0.2.1")
    _one_line_naming(result, "STREAMREC_WORKER_METRICS_HOST")
