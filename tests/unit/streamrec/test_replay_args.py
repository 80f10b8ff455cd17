"""`streamrec replay` options that cannot run are refused with one line and exit code 2,
before any server is asked: never a traceback, never a silent "as fast as possible"."""

from __future__ import annotations

import pytest

from streamrec.cli import main
from streamrec.ops.replay import parse_speed, parse_time


@pytest.fixture(autouse=True)
def clean_env(no_stack: None) -> None:
    """Every test here runs in :func:`tests.unit.streamrec.conftest.no_stack`."""


@pytest.mark.parametrize(("argv", "said"), [
    (["--from-time", "abc", "--to-time", "5"], "neither epoch seconds nor ISO-8601"),
    (["--from-time", "nan", "--to-time", "inf"], "between 1970 and the year 9999"),
    (["--from-time", "1e30", "--to-time", "1e31"], "between 1970 and the year 9999"),
    (["--from-time", "10", "--to-time", "20", "--speed", "fast"], "--speed 'fast'"),
    (["--from-time", "10", "--to-time", "20", "--speed", "0"], "0 < N"),
    (["--from-time", "10", "--to-time", "20", "--speed", "-2"], "0 < N"),
    (["--from-time", "20", "--to-time", "10"], "is not after --from-time"),
    (["--from-time", "20", "--to-time", "20"], "is not after --from-time"),
    (["--to-time", "20"], "give --rebuild, or --from-time and --to-time"),
    (["--keep-state"], "--keep-state goes with --rebuild"),
    (["--rebuild", "--to-time", "20"], "only for a re-drive"),
    (["--rebuild", "--from-time", "yesterday"], "neither epoch seconds nor ISO-8601"),
    # a ValueError traceback from the producer, after reading the range (exit 1)
    (["--from-time", "10", "--to-time", "20", "--to-topic", "bad topic!"], "not a Kafka topic"),
    (["--from-time", "10", "--to-time", "20", "--to-topic", ""], "not a Kafka topic"),
    (["--from-time", "10", "--to-time", "20", "--to-topic", ".."], "not a Kafka topic"),
    (["--from-time", "10", "--to-time", "20", "--to-topic", "t" * 250], "not a Kafka topic"),
    # streamrec's own other topics: dead-lettered, skipped or a corrupt history table
    (["--from-time", "10", "--to-time", "20", "--to-topic", "catalog"], "catalog topic"),
    (["--from-time", "10", "--to-time", "20", "--to-topic", "events-dlq"], "dead-letter topic"),
    (["--from-time", "10", "--to-time", "20", "--to-topic", "forgotten"], "forgotten topic"),
])
def test_options_that_cannot_run_are_one_line_and_exit_2(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_broker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--from-time", "10", "--to-time", "20"]) == 1
    assert "cannot reach Kafka at 127.0.0.1:9" in capsys.readouterr().err


def test_times_and_speeds_that_run() -> None:
    assert parse_time("1511658000") == parse_time("2017-11-26T01:00:00Z") == 1511658000.0
    assert parse_time("2017-11-26T01:00:00") == 1511658000.0  # naive = UTC
    assert parse_time("2017-11-26T09:00:00+08:00") == 1511658000.0
    assert parse_speed(None) is None and parse_speed("max") is None
    assert parse_speed("10") == 10.0 and parse_speed("0.5") == 0.5
