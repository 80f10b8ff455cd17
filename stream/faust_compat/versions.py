"""The faust-streaming, mode-streaming and aiokafka releases whose internals we patch.

The patches of this package replace private methods and read private attributes; a
release that renames or reorders them would make a patch silently wrong (an offset
committed over an unprocessed message is a lost event, noticed by nobody). So the worker
refuses to start on any version not listed here, unless the operator says otherwise
with ``STREAMREC_FAUST_COMPAT_UNSAFE=1`` (unsafe: the patches are applied to code they
were never checked against). pyproject.toml pins exactly these versions; adding one here
means re-reading the patched code and running the chaos and commit-safety tests on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import metadata

log = logging.getLogger("streamrec.faust_compat")

#: Distribution name -> the versions whose internals every patch was checked against.
KNOWN_VERSIONS: dict[str, tuple[str, ...]] = {
    "faust-streaming": ("0.15.3",),
    "mode-streaming": ("0.7.1",),
    "aiokafka": ("0.14.0",),
}

#: The setting that overrides the check (``Settings.faust_compat_unsafe``).
OVERRIDE = "STREAMREC_FAUST_COMPAT_UNSAFE=1"


class UnknownFaustVersion(RuntimeError):
    """A patched library is installed in a version the patches were not checked on."""


def installed_versions() -> dict[str, str | None]:
    """The installed version of each patched distribution (None when missing)."""
    out: dict[str, str | None] = {}
    for name in KNOWN_VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def unknown_versions(installed: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The distributions whose installed version is not in :data:`KNOWN_VERSIONS`."""
    found = installed_versions() if installed is None else installed
    return {name: found.get(name) for name, known in KNOWN_VERSIONS.items()
            if found.get(name) not in known}


def check_versions(*, unsafe: bool = False,
                   installed: Mapping[str, str | None] | None = None) -> None:
    """Raise :class:`UnknownFaustVersion` unless every patched library is a known version.

    With ``unsafe`` (``STREAMREC_FAUST_COMPAT_UNSAFE=1``) an unknown version only logs a
    warning and the patches are applied anyway.
    """
    unknown = unknown_versions(installed)
    if not unknown:
        return
    found = ", ".join(f"{name} {version or '(not installed)'}"
                      for name, version in unknown.items())
    known = ", ".join(f"{name} {' or '.join(versions)}"
                      for name, versions in KNOWN_VERSIONS.items())
    message = (f"streamrec patches Faust internals and knows only {known}; installed: "
               f"{found}. Install the pinned versions (pyproject.toml), or set {OVERRIDE} "
               f"to start anyway (unsafe: offsets may be committed past unprocessed events).")
    if unsafe:
        log.warning("%s Starting anyway because of %s.", message, OVERRIDE)
        return
    raise UnknownFaustVersion(message)
