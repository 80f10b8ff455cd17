"""The tools that post events (evaluation through the API, the ingest bench) retry with
the Python client's rule: refusals worth retrying are retried, ``Retry-After`` is
honoured, anything else fails at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from core.settings import Settings
from streamrec.bench import ingest
from streamrec.eval import via_api

EVENT = {"type": "view", "user_id": "u1", "item_id": "i1", "ts": 1_700_000_000.0}


def answers(*statuses: int) -> tuple[httpx.MockTransport, list[float]]:
    """A transport giving ``statuses`` in turn (the last one from then on) and the
    ``Retry-After: 0`` it sends with each refusal; ``calls`` counts the requests."""
    calls: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        status = statuses[min(len(calls), len(statuses) - 1)]
        calls.append(1.0)
        headers = {"Retry-After": "0"} if status != 202 else {}
        return httpx.Response(status, headers=headers, json={"detail": "x"})

    return httpx.MockTransport(handle), calls


def test_evaluation_retries_refusals_then_posts(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(via_api.time, "sleep", waits.append)
    transport, calls = answers(429, 503, 202)
    with httpx.Client(transport=transport, base_url="http://api") as client:
        assert via_api.post_events(client, Settings(), [EVENT]) == 1
    assert len(calls) == 3
    assert waits == [0.0, 0.0]  # the server's Retry-After, not a backoff of its own


def test_evaluation_fails_at_once_on_a_bad_request() -> None:
    transport, calls = answers(422)
    with httpx.Client(transport=transport, base_url="http://api") as client:
        with pytest.raises(RuntimeError, match="422"):
            via_api.post_events(client, Settings(), [EVENT])
    assert len(calls) == 1


def test_the_bench_retries_refusals_and_gives_up_on_a_bad_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = httpx.AsyncClient

    def client(transport: httpx.MockTransport) -> Any:
        def build(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
            kwargs.pop("limits", None)
            return real(*args, transport=transport, **kwargs)
        return build

    transport, calls = answers(503, 429, 202)
    monkeypatch.setattr(httpx, "AsyncClient", client(transport))
    asyncio.run(ingest.post_all("http://api", [EVENT], batch=1, concurrency=1, key="k"))
    assert len(calls) == 3

    transport, calls = answers(400)
    monkeypatch.setattr(httpx, "AsyncClient", client(transport))
    with pytest.raises(RuntimeError, match="400"):
        asyncio.run(ingest.post_all("http://api", [EVENT], batch=1, concurrency=1, key="k"))
    assert len(calls) == 1
