"""Fuzzing the HTTP API from its own OpenAPI document with schemathesis.

The API runs as a real process with real Kafka and Redis behind it; schemathesis
generates requests (valid and invalid) for every operation and the test asserts that
none is answered with a 5xx. The budget is small for CI (``STREAMREC_FUZZ_EXAMPLES``,
default 20 per operation); raise it locally for a deeper run.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from core import kafka_tools
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, stop_pid
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]
ADMIN = "fuzz-admin-key-0123"
EXAMPLES = int(os.environ.get("STREAMREC_FUZZ_EXAMPLES", "20"))
TALLY: dict[str, Any] = {"cases": 0, "server_errors": []}
LOGS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def api_url(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API process (admin key set) on the session's broker and Redis."""
    tmp = tmp_path_factory.mktemp("fuzz")
    s = Settings(kafka_bootstrap=infra.kafka_bootstrap, redis_url=infra.redis_url,
                 topic_events="events-fuzz", topic_catalog="catalog-fuzz",
                 topic_dlq="events-dlq-fuzz", app_id="streamrec-fuzz", state_dir=tmp,
                 api_port=free_port(), admin_keys=ADMIN, tracking_keys="fuzz-track-key-0123",
                 read_keys="fuzz-read-key-01234", topic_partitions=1)
    kafka_tools.create_topics(s)
    LOGS["api"] = tmp / "api.log"
    proc = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=LOGS["api"],
                 env=env_for_child(s))
    url = f"http://127.0.0.1:{s.api_port}"
    try:
        wait_for_port("127.0.0.1", s.api_port, timeout=30, proc=proc)
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 30, "API ready")
        yield url
    finally:
        stop_pid(proc.pid)
        report = os.environ.get("STREAMREC_CHAOS_REPORT")
        line = {"test": "fuzz", "cases": TALLY["cases"],
                "server_errors": len(TALLY["server_errors"])}
        print(f"\nFUZZ: {json.dumps(line)}")
        if report:
            with open(report, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        if TALLY["server_errors"]:
            Path(tmp / "server-errors.json").write_text(json.dumps(TALLY["server_errors"]))


def test_no_server_errors(api_url: str) -> None:
    """Every operation of the OpenAPI document: ``EXAMPLES`` valid and ``EXAMPLES`` invalid
    generated requests each."""
    api = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = [op.ok() for op in api.get_all_operations()]
    assert len(operations) >= 10

    for operation, mode in itertools.product(operations, list(GenerationMode)):

        @given(case=operation.as_strategy(generation_mode=mode))
        @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=api_url, headers={"X-API-Key": ADMIN}, timeout=15)
            TALLY["cases"] += 1
            if response.status_code >= 500:
                TALLY["server_errors"].append(
                    {"method": case.method, "path": case.formatted_path,
                     "status": response.status_code, "body": response.text[:500]})
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text[:500])

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # e.g. /healthz: nothing to break


def _raw(url: str, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``request`` as bytes; the status and JSON body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # the server may answer and close before it read everything
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.getheader("content-type") == "application/json"
        return answer.status, json.loads(answer.read())


@pytest.mark.parametrize(("request_head", "status", "words"), [
    (b"GET /v1/popular?exclude=" + b"a" * 100_000 + b" HTTP/1.1\r\n", 414, "URL"),
    (b"GET /v1/popular HTTP/1.1\r\nX-Junk: " + b"j" * 8_000_000 + b"\r\n", 431, "headers"),
    (b"GET /v1/popular HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)),
     431, "headers"),
    (b"GET /v1/popular HTTP/1.1\r\nX-API-Key: a\x01b\r\n", 400, "header value"),
    (b"FOO /v1/popular HTTP/1.1\r\n", 400, "method"),
    (b"GET /v1/\xff/popular HTTP/1.1\r\n", 400, "url"),
    (b"POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
     400, "Content-Length"),
], ids=["url-100k", "header-8mb", "20k-headers", "control-char", "method", "raw-byte",
        "te-and-cl"])
def test_requests_the_http_parser_refuses_get_the_json_error(
        api_url: str, request_head: bytes, status: int, words: str) -> None:
    """uvicorn answered these itself with a text/plain 400 and buffered heads of any
    size; now each gets the API's error body saying what is wrong."""
    got, body = _raw(api_url, request_head + b"Host: x\r\nConnection: close\r\n\r\n")
    assert got == status
    assert set(body["error"]) == {"code", "message"}
    assert words.lower() in body["error"]["message"].lower()


def test_refused_requests_cannot_flood_the_log(api_url: str) -> None:
    """uvicorn logged a WARNING for every request its parser refused: anyone who can
    open a connection wrote a log line per packet. Repeats inside 10 s are now counted
    into the next line that passes (``suppressed=N``) instead."""
    def refusals() -> int:
        return LOGS["api"].read_text().count("Invalid HTTP request received")

    before = refusals()
    for _ in range(40):
        assert _raw(api_url, b"FOO / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 400
    assert refusals() - before <= 1


def test_a_head_just_under_the_bounds_is_served(api_url: str) -> None:
    """A 60 KB query and a 60 KB header are still answered by the app."""
    got, body = _raw(api_url, b"GET /v1/popular?zz=" + b"a" * 60_000 + b" HTTP/1.1\r\n"
                     b"Host: x\r\nX-Junk: " + b"j" * 60_000 + b"\r\nConnection: close\r\n\r\n")
    assert got == 401 and body["error"]["code"] == "unauthorized"
