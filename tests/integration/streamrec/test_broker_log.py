"""The embedded Tansu broker's log file is plain text: no terminal escape codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.stack.servers import start_tansu

pytestmark = pytest.mark.integration


def test_tansu_log_has_no_colour_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tansu.log of a live stack carried ANSI colours on every WARN/ERROR line (e.g.
    # after `streamrec replay --rebuild` reset the consumer group). INFO lines show it too.
    monkeypatch.setenv("RUST_LOG", "info")
    srv = start_tansu(tmp_path)
    srv.stop()
    text = (tmp_path / "tansu.log").read_text(errors="replace")
    assert "INFO" in text, text
    assert "\x1b" not in text, text[:500]
