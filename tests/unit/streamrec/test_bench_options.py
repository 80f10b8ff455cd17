"""What every ``streamrec bench`` command owes its user, checked without servers: a bad
value is one argparse line and exit code 2 (0 once divided by zero, ``--concurrency 0``
waited forever); no API is one line naming what to do (``bench freshness`` printed an
httpx traceback); the JSON is written whole or not at all; SIGTERM unwinds like Ctrl-C
(``bench serve`` left its redis-server, API and bare endpoint running)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from streamrec.bench.dashboard import summarize, table
from streamrec.bench.options import finish, stops_on_sigterm, write_json
from streamrec.cli import main

BAD = {
    "freshness": {"--users": ["0", "-1", "100000", "abc"], "--stock-rounds": ["-1"],
                  "--timeout": ["0", "nan", "-5", "1e9"],
                  "--api-url": ["foo", "localhost:8000", "ftp://h"]},
    "ingest": {"--events": ["0", "-3", "99999999999"], "--batch": ["0", "501"],
               "--concurrency": ["0"], "--workers": ["0"], "--rate": ["0", "inf"],
               "--hold": ["0", "-1"], "--runs": ["0"], "--threads": ["0"],
               "--lone-samples": ["0"], "--lone-idle": ["-1"],
               "--lone-timeout": ["0", "nan", "601"], "--train-events": ["-1"],
               "--api-url": ["foo"]},
    "serve": {"--rates": ["0", "-100", "1.5"], "--duration": ["0"], "--warmup": ["-1"],
              "--users": ["0"], "--items": ["0"], "--repeat": ["0", "x"],
              "--live-writes": ["-1", "x", "nan", "inf", "100001"]},
    "train": {"--events": ["0", "99999999999"], "--shoppers": ["0"], "--items": ["0"],
              "--runs": ["0"],  # the variant lists once exited 1 with a bare message:
              **{flag: ["abc", "0", "5,-1", "100000", ",", ",".join(["6"] * 21)]
                 for flag in ("--iterations", "--cg-steps")}},
    "dashboard": {"--seconds": ["0", "-1"], "--interval": ["0"], "--requests": ["0"],
                  "--api-pid": ["-3"], "--api-url": ["foo"]},
}
CASES = [(cmd, flag, value) for cmd, flags in BAD.items() for flag, values in flags.items()
         for value in values]


pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.mark.parametrize(("command", "flag", "value"), CASES,
                         ids=[f"{c} {f} {v}" for c, f, v in CASES])
def test_a_bad_value_is_one_line_and_exit_2(command: str, flag: str, value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", command, f"{flag}={value}"])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"streamrec bench {command}: error: argument {flag}")


def test_train_variant_lists_parse() -> None:
    from streamrec.bench.train import step_list

    assert step_list("10,6") == [10, 6] and step_list(" 3 ") == [3]


def test_help_states_the_defaults(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # no line breaks inside a path
    for command in BAD:
        with pytest.raises(SystemExit):
            main(["bench", command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"(default: bench-results/{command}.json)" in text
    with pytest.raises(SystemExit):
        main(["bench", "serve", "--help"])
    assert "(default: 500 1000 2000)" in " ".join(capsys.readouterr().out.split())


def test_freshness_with_no_api_is_one_line_naming_what_to_do(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    assert main(["bench", "freshness", "--api-url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"streamrec: error: cannot reach the API at http://127.0.0.1:{port}")
    assert "streamrec up" in err and "--api-url" in err


def test_the_json_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "serve.json"
    write_json(out, {"p99_ms": 4.5})  # directories created
    assert json.loads(out.read_text()) == {"p99_ms": 4.5}
    with pytest.raises(TypeError):
        write_json(out, {"p99_ms": object()})  # fails half way through the dump
    assert json.loads(out.read_text()) == {"p99_ms": 4.5}
    assert [p.name for p in out.parent.iterdir()] == ["serve.json"]  # no temporary left


def test_finish_records_the_command_and_ends_with_it_and_the_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/venv/bin/streamrec", "bench", "serve", "--rates", "200"])
    report: dict[str, object] = {"p99_ms": 4.5}
    last = finish(report, tmp_path / "serve.json")
    assert last.splitlines() == ["command: streamrec bench serve --rates 200",
                                 f"JSON: {tmp_path / 'serve.json'}"]
    assert json.loads((tmp_path / "serve.json").read_text())["command"] == (
        "streamrec bench serve --rates 200")


def test_sigterm_unwinds_a_bench_like_ctrl_c() -> None:
    cleaned: list[str] = []
    before = signal.getsignal(signal.SIGTERM)

    @stops_on_sigterm
    def run(_args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
            return 0
        finally:
            cleaned.append("children stopped")

    with pytest.raises(KeyboardInterrupt):
        run(None)  # type: ignore[arg-type]
    assert cleaned == ["children stopped"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_dashboard_report_is_the_table_of_the_docs() -> None:
    phases = {"idle": {"seconds": 10.0, "api_cpu_s": 0.02},
              "one_dashboard": {"seconds": 10.0, "api_cpu_s": 0.04, "aggregates": 2},
              "ten_dashboards": {"seconds": 10.0, "api_cpu_s": 0.07, "aggregates": 5},
              "serving": {"cpu_us_per_request": 100.0}}
    lines = table(summarize(phases)).splitlines()
    assert lines[0].startswith("| phase | API CPU over idle | per aggregate | share of")
    assert lines[3] == "| one dashboard | 2.0 ms/s | 10.0 ms | **0.2 %** | 20.0 |"
    assert lines[4].startswith("| ten dashboards | 5.0 ms/s |")
