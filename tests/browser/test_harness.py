"""The browser tests' stack start survives losing its API port: three test processes start
servers side by side, and a port picked free was once bound by another test's server before
our API bound it (`streamrec up` failed with "Address already in use")."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from core.net import free_port
from tests.browser import harness

pytestmark = [pytest.mark.integration]


def test_stack_up_moves_to_a_new_port_when_its_port_was_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1], free_port()])
    monkeypatch.setattr(harness, "free_port", lambda: next(ports))
    try:
        with harness.stack_up(tmp_path) as (env, state):
            assert env["STREAMREC_API_PORT"] != str(taken.getsockname()[1])
            assert state["api_url"].endswith(f":{env['STREAMREC_API_PORT']}")
            ready = httpx.get(f"{state['api_url']}/readyz", timeout=5, trust_env=False)
            assert ready.json()["status"] == "ready"
    finally:
        taken.close()
    assert not (tmp_path / ".streamrec" / "stack.json").exists()
