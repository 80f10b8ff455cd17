"""`streamrec simulate` and `streamrec demo` refuse a bad number as every other command does:
one argparse line and exit code 2, before anything starts. They once took any number:
`simulate --users 100000000` built its shop model for minutes and gigabytes, `--rate nan`
ran, and `demo --duration -1` started the stack and then died in a traceback."""

from __future__ import annotations

import pytest

from core.settings import get_settings
from streamrec.cli import main

BAD = {
    "simulate": {"--users": ["0", "100000000", "x"], "--items": ["0", "100000000"],
                 "--rate": ["-1", "nan", "inf"], "--duration": ["-1", "1e308"],
                 "--events": ["-1", "99999999999"], "--batch-size": ["0", "501"],
                 "--anonymous-share": ["2", "nan"], "--out-of-stock": ["-1"],
                 "--base-rate": ["2"], "--list-effect": ["0", "-1"], "--srm-loss": ["1.5"],
                 "--wait": ["-1", "1e9"]},
    "demo": {"--duration": ["-1", "nan"], "--rate": ["-1", "inf"],
             "--users": ["0", "100000000"], "--items": ["0"]},
}
CASES = [(cmd, flag, value) for cmd, flags in BAD.items() for flag, values in flags.items()
         for value in values]


@pytest.fixture(autouse=True)
def clean_env(no_stack: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stack to reach: should a refusal regress, the command fails at once instead of
    starting one."""
    monkeypatch.setenv("STREAMREC_REDIS_URL", "redis://127.0.0.1:9/0")
    get_settings.cache_clear()


@pytest.mark.parametrize(("command", "flag", "value"), CASES,
                         ids=[f"{c} {f} {v}" for c, f, v in CASES])
def test_a_bad_value_is_one_line_and_exit_2(command: str, flag: str, value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, f"{flag}={value}", "--api-url=http://127.0.0.1:9"]
             if command == "simulate" else [command, f"{flag}={value}"])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"streamrec {command}: error: argument {flag}"), last


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_help_states_the_defaults(command: str, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """README says the demo sends 30 s of traffic: its help says so too now."""
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seconds of traffic (default: 30)" in text or "seconds to run (default: 30)" in text
    assert "(default: 300)" in text and "(default: 500)" in text


#: Plain numbers a command checks itself: `up`'s counts go through the settings' bounds
#: (one line naming the option, exit 1); a seed is any integer.
CHECKED_ELSEWHERE = {("up", "--brokers"), ("up", "--workers"), ("up", "--api-processes"),
                     ("simulate", "--seed"), ("demo", "--seed")}


def test_every_numeric_option_is_bounded() -> None:
    """Each command's numeric options go through `streamrec.arg_types` (bounded, one
    argparse line on a bad value), so a new option with a bare `type=int` is caught here."""
    from streamrec.cli import build_parser
    from tests.unit.test_docs import command_parsers

    bare = sorted((path, action.option_strings[0])
                  for path, node in command_parsers(build_parser()).items()
                  for action in node._actions
                  if action.type in (int, float) and action.option_strings)
    assert [b for b in bare if b not in CHECKED_ELSEWHERE] == []
