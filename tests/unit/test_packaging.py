"""pyproject.toml as ``make install`` builds it: the metadata the pinned setuptools reads
without a deprecation notice (a newcomer's first ``make demo`` printed three boxed
``BuildBackendWarning``s saying builds would stop working, for the license table)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def _editable_install_warning_filter() -> str:
    """The ``PYTHONWARNINGS`` entry the Makefile's editable install appends (empty when
    it has none)."""
    makefile = (PYPROJECT.parent / "Makefile").read_text(encoding="utf-8")
    commands = makefile.replace("\\\n", " ").splitlines()  # recipe lines joined
    line = next(x for x in commands if "pip install" in x and " -e " in x)
    found = re.search(r"PYTHONWARNINGS=\"[^\"]*?(ignore:[^\"]+)\"", line)
    return found.group(1) if found else ""


def _emit_in_child(code: str, warning_filter: str) -> str:
    """stderr of ``code`` run as the build backend runs under pip (warnings recorded)."""
    env = {**os.environ, "PYTHONWARNINGS": warning_filter}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stderr


def test_make_install_prints_no_editable_installation_box() -> None:
    """The pinned setuptools' editable build ends with an informational ``!!`` box
    ("Please be careful with folders in your working directory ..."), which pip 26 shows
    as a ``BuildBackendWarning`` during a newcomer's first ``make demo``. The Makefile's
    install filters exactly that notice out, in the backend's process, where setuptools
    emits it; other setuptools warnings still show."""
    warning_filter = _editable_install_warning_filter()
    assert warning_filter, "the Makefile's `pip install -e` sets no PYTHONWARNINGS filter"
    notice = ("from setuptools.warnings import InformationOnly\n"
              "InformationOnly.emit('Editable installation.', 'Please be careful with "
              "folders in your working directory.')\n")
    assert "Editable installation" in _emit_in_child(notice, "")  # what pip would show
    assert _emit_in_child(notice, warning_filter) == ""
    other = ("from setuptools.warnings import SetuptoolsDeprecationWarning\n"
             "SetuptoolsDeprecationWarning.emit('License classifiers are deprecated.', "
             "'Use an SPDX expression.')\n")
    assert "License classifiers" in _emit_in_child(other, warning_filter)
