"""pyproject.toml as ``make install`` builds it: the metadata the pinned setuptools reads
without a deprecation notice (a newcomer's first ``make demo`` printed three boxed
``BuildBackendWarning``s saying builds would stop working, for the license table)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_license_is_an_spdx_expression_the_pinned_setuptools_reads() -> None:
    """``project.license`` as a table (``{text = ...}``) is deprecated from setuptools 77
    on, which says so at every build; a plain SPDX string is the current form."""
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    pins = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    assert len(pins) == 1, pins
    version = re.fullmatch(r"setuptools==(\d+)\.\d+(\.\d+)?", pins[0])
    assert version is not None and int(version.group(1)) >= 77, pins[0]


def test_the_venv_gets_the_setuptools_the_build_pins() -> None:
    """``make install`` puts the build's setuptools into .venv too: tests that run
    setuptools from it (``test_sdk_route``'s ``build_py``) then read the SPDX license
    (the setuptools a fresh venv ships, 65.x, refuses it)."""
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    pin = next(r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools"))
    makefile = (PYPROJECT.parent / "Makefile").read_text(encoding="utf-8")
    assert f"'{pin}'" in makefile
