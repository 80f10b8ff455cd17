"""End to end on real servers, for serving: an anonymous visitor's live session list,
identify merging it into the user, and attribution of events that carry a list id."""

from __future__ import annotations

import httpx
import pytest

from core.settings import Settings
from tests.integration.test_e2e import ADMIN, READ, TRACK, e2e, ids  # noqa: F401
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def test_sessions_identify_and_attribution(e2e: tuple[httpx.Client, Settings]) -> None:  # noqa: F811
    client, _ = e2e
    h_track, h_read, h_admin = ({"X-API-Key": k} for k in (TRACK, READ, ADMIN))

    # Other shoppers: whoever views "tent" also views "stove" and "lamp".
    crowd = [{"type": "view", "user_id": f"x{u}", "item_id": item}
             for u in range(8) for item in ("tent", "stove", "lamp")]
    crowd += [{"type": "view", "user_id": f"y{u}", "item_id": "mug"} for u in range(12)]
    assert client.post("/v1/events", json={"events": crowd}, headers=h_track).status_code == 202

    # A brand-new anonymous visitor views a tent: a session list right away.
    assert client.post("/v1/events", headers=h_track, json={
        "type": "view", "anonymous_id": "anon-42", "item_id": "tent"}).status_code == 202
    url = "/v1/users/anon-42/recommendations?n=3"

    def session_list() -> bool:
        resp = client.get(url, headers=h_read)
        return resp.json()["source"] == "session" and set(ids(resp)) >= {"stove", "lamp"}
    wait_for(session_list, 10)

    # Identify: the known user's list reflects the anonymous history within seconds.
    user_url = "/v1/users/known-42/recommendations?n=3"
    assert client.get(user_url, headers=h_read).json()["source"] == "popular"
    assert client.post("/v1/identify", headers=h_track, json={
        "anonymous_id": "anon-42", "user_id": "known-42"}).status_code == 202
    wait_for(lambda: client.get(user_url, headers=h_read).json()["source"] == "session", 10)
    assert {"stove", "lamp"} <= set(ids(client.get(user_url, headers=h_read)))

    # Attribution: impressions and clicks carrying the list id, through Kafka and the worker.
    listed = client.get(user_url, headers=h_read).json()
    rid = listed["recommendation_id"]
    shown = ids(client.get(user_url, headers=h_read))
    events = [{"type": "impression", "user_id": "known-42", "item_ids": shown,
               "recommendation_id": rid},
              {"type": "click", "user_id": "known-42", "item_id": shown[0],
               "recommendation_id": rid}]
    assert client.post("/v1/events", json={"events": events}, headers=h_track).status_code == 202

    def reported() -> bool:
        report = client.get("/v1/admin/attribution", headers=h_admin).json()
        rows = {row["name"]: row for row in report["by_origin"]}
        return rows.get("session", {}).get("ctr") == 1.0
    wait_for(reported, 10)
