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


def test_operations_topic_table_names_every_topic() -> None:
    """docs/operations.md's table of what `streamrec topics create` makes lists each topic
    of core.topics.topic_specs (the `forgotten` topic was once left out)."""
    from core.topics import topic_specs

    settings = Settings()
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Topics: `streamrec topics create`", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| `")}
    app_id = f"{settings.app_id}-"
    missing = [spec.name for spec in topic_specs(settings)
               if not any(row.startswith(f"`{spec.name}`")
                          or (spec.name.startswith(app_id)
                              and row.startswith(f"`<app id>-{spec.name[len(app_id):]}`"))
                          for row in rows)]
    assert not missing, f"docs/operations.md's topic table lacks: {missing}"


def _shown_default(value: object) -> str:
    """A default as the README configuration table writes it (as `streamrec config`)."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def test_readme_defaults_equal_the_code() -> None:
    """Every default in README's configuration table is the field's default."""
    wrong = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("| `STREAMREC_"):
            continue
        name, shown = (cell.strip() for cell in line.split("|")[1:3])
        field = Settings.model_fields.get(name.strip("`").removeprefix("STREAMREC_").lower())
        assert field is not None, f"README names {name}, which is no setting"
        if field.default is None:  # unset: decided at run time, the cell says how
            continue
        if shown != _shown_default(field.default):
            wrong.append(f"{name}: README {shown}, code {_shown_default(field.default)}")
    assert not wrong, "README configuration defaults differ from core/settings.py:\n" + "\n".join(
        wrong)
