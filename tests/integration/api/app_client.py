"""Driving the API app in-process against the session's real servers, shared by the
tests of this package: the app inside its lifespan, what reached Kafka, error answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from api.app import create_app
from core.kafka_tools import read_topic
from core.settings import Settings


@asynccontextmanager
async def running(
    settings: Settings, *, wait_ready: bool = True, address: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app inside its lifespan, driven in-process through httpx; requests come from
    ``address`` (default httpx's 127.0.0.1: loopback, exempt from the per-address and
    per-id tracking limits)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = (httpx.ASGITransport(app=app, client=(address, 4321)) if address
                     else httpx.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            if wait_ready:
                for _ in range(150):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("API never became ready")
            yield client


def records(settings: Settings, topic: str) -> list[Any]:
    """Every record on ``topic`` now."""
    return list(read_topic(settings, topic, timeout_s=30))


def envelopes(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """(key, decoded envelope) of every message on the events topic."""
    return [
        (rec.key.decode(), orjson.loads(rec.value))
        for rec in records(settings, settings.topic_events)
    ]


def assert_error(response: httpx.Response, status: int, code: str | None = None
                 ) -> dict[str, Any]:
    """Assert an error answer of ``status`` (and ``code``) in the API's shape; its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    return body
