"""The API's metric values against what was sent (a real broker and Redis): every
tracking event Kafka acknowledged is counted once, as the workers will count it, and a
list counts as served only when a client asked for it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.kafka_tools import create_topics
from core.net import free_port
from core.settings import Settings
from tests.integration.api.app_client import running
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]


async def _values(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                          float]:
    """Every sample of a ``/metrics`` scrape: (name, sorted labels) → value."""
    text = (await client.get("/metrics")).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_an_identify_is_an_accepted_event(topics: Settings) -> None:
    """``POST /v1/identify`` produces one ``identify`` event, which the workers count in
    ``streamrec_events_processed_total``; the API counted none, so accepted and processed
    never agreed on a shop whose shoppers sign in."""
    accepted = ("streamrec_api_events_accepted_total", ())
    async with running(topics) as client:
        before = (await _values(client))[accepted]
        r = await client.post("/v1/events", json={"events": [
            {"type": "view", "user_id": "u1", "item_id": "a"},
            {"type": "view", "anonymous_id": "anon-1", "item_id": "b"}]})
        assert r.status_code == 202
        for k in range(3):
            r = await client.post("/v1/identify",
                                  json={"anonymous_id": f"anon-{k}", "user_id": f"u{k}"})
            assert r.status_code == 202, r.text
        r = await client.post("/v1/identify", json={"anonymous_id": "anon-9"})
        assert r.status_code == 422  # refused: nothing reached Kafka, nothing counted
        assert (await _values(client))[accepted] - before == 2 + 3


async def test_lists_served_are_the_recommendation_gets(topics: Settings) -> None:
    """``streamrec_api_lists_served_total{source}`` counts the lists the recommendation
    GETs answered, by their ``source``; an operator's preview of a shopper's list (the
    dashboard's user lookup) is not one of them: it was counted as ``personalized``."""
    async with running(topics) as client:
        before = await _values(client)
        sources: dict[str, int] = {}
        for path in ("/v1/users/u1/recommendations", "/v1/users/u2/recommendations?context=cart",
                     "/v1/items/a/similar", "/v1/popular?n=3", "/v1/trending"):
            r = await client.get(path)
            assert r.status_code == 200, r.text
            sources[r.json()["source"]] = sources.get(r.json()["source"], 0) + 1
        for user in ("u1", "u3"):
            r = await client.get("/v1/admin/preview", params={"user_id": user})
            assert r.status_code == 200, r.text
        after = await _values(client)
    served = {dict(labels)["source"]: value - before.get((name, labels), 0)
              for (name, labels), value in after.items()
              if name == "streamrec_api_lists_served_total"}
    assert {s: n for s, n in served.items() if n} == sources


def test_a_client_gone_mid_body_is_no_500(settings: Settings, tmp_path: Path) -> None:
    """A client that closes its connection in the middle of a body (a tab closed, a
    phone out of coverage) gets no answer, and the API answered nothing: it was counted
    as ``status="500"``, paging whoever alerts on server errors. It is ``499``."""
    create_topics(settings)
    with api_process(settings, tmp_path) as (client, s):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", s.api_port)) as held:
                held.sendall(b"POST /v1/events HTTP/1.1\r\nHost: api\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 100\r\n\r\n{")
                time.sleep(0.3)  # the app is reading the body
        statuses: dict[str, float] = {}

        def counted() -> bool:
            text = client.get("/metrics").text
            statuses.clear()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (sample.name == "streamrec_api_requests_total"
                            and sample.labels["route"] == "/v1/events"):
                        statuses[sample.labels["status"]] = sample.value
            return statuses.get("499") == 3

        wait_for(counted, 10)
        assert statuses == {"499": 3}


async def test_every_write_kafka_refused_is_a_produce_failure(settings: Settings) -> None:
    """``streamrec_api_produce_failures_total`` counts the requests answered 503 because
    Kafka did not acknowledge: a forget (``DELETE /v1/users/{id}``) was not among them."""
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}",
                                       "produce_timeout_s": 0.5})
    failures = ("streamrec_api_produce_failures_total", ())
    async with running(down, wait_ready=False) as client:
        before = (await _values(client))[failures]
        answers = [
            await client.post("/v1/events", json={"type": "view", "user_id": "u",
                                                  "item_id": "a"}),
            await client.put("/v1/items/a", json={"name": "A"}),
            await client.delete("/v1/users/u-gone"),
        ]
        assert [r.status_code for r in answers] == [503, 503, 503]
        assert (await _values(client))[failures] - before == 3
