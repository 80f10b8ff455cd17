"""Docs that must stay true to the code."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"STREAMREC_{n.upper()}" not in readme]
    assert not missing, f"README configuration table lacks: {missing}"


def test_readme_names_every_cli_command() -> None:
    from streamrec.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in commands.choices if f"streamrec {c}" not in readme]
    assert not missing, f"README CLI table lacks: {missing}"
