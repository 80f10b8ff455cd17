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
