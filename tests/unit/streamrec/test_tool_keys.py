"""Our commands send the API key the settings object names for a role
(``core.stack_defaults.first_key``), never one they read from the environment themselves:
five copies read ``STREAMREC_*_KEYS`` directly, and three of them took the text before
the first comma, so ``STREAMREC_ADMIN_KEYS=",adm"`` sent no key at all."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import Settings
from core.stack_defaults import first_key
from streamrec.ops.load import _api_key

ROOT = Path(__file__).resolve().parents[3]


def test_the_first_key_skips_blanks_as_the_api_does() -> None:
    assert first_key("") == "" and first_key(" , ") == ""
    assert first_key("a,b") == "a" and first_key(" ,adm, x") == "adm"


def test_load_sends_the_admin_key_else_the_tracking_key() -> None:
    assert _api_key(Settings(admin_keys=",adm", tracking_keys="trk")) == "adm"
    assert _api_key(Settings(admin_keys="", tracking_keys=" ,trk")) == "trk"


def test_no_command_reads_api_keys_from_the_environment() -> None:
    reads = re.compile(r"environ(\.get\(|\[)\s*[\"']STREAMREC_\w*KEYS")
    found = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "streamrec").rglob("*.py"))
             if reads.search(path.read_text(encoding="utf-8"))]
    assert found == []
