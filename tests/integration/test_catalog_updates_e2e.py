"""A merchant's catalog sync through the running system (API process → Kafka → worker
process → Redis → API): a stored category is one a ``category=`` filter can name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def served(client: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    resp = client.get(url)
    assert resp.status_code == 200, resp.text
    return {i["item_id"]: i for i in resp.json()["items"]}


def test_every_stored_category_is_one_a_filter_can_select(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    start_worker()
    with api_process(settings, tmp_path) as (client, _):
        assert client.put("/v1/items/t1", json={"name": "Boot", "category": " boots "}
                          ).status_code == 202
        assert client.put("/v1/items/t2", json={"name": "Sock", "category": "  "}
                          ).status_code == 202
        wait_for(lambda: "t1" in served(client, "/v1/popular?n=10&category=boots"), 5,
                 "a trimmed category selectable")
        assert served(client, "/v1/popular?n=10&category=boots")["t1"]["category"] == "boots"
        assert client.get("/v1/admin/items/t2").json()["category"] is None

        # a comma could never be named by category=a,b: refused, nothing written
        for write in (lambda: client.put("/v1/items/t1", json={"category": "boots,socks"}),
                      lambda: client.post("/v1/items", json={"items": [
                          {"item_id": "t3", "name": "Lace"},
                          {"item_id": "t1", "category": "boots,socks"}]})):
            resp = write()
            assert resp.status_code == 422, resp.text
            assert resp.json()["error"]["code"] == "validation_error"
            assert resp.json()["detail"][0]["loc"][-1] == "category"
        assert client.get("/v1/admin/items/t1").json()["category"] == "boots"
        assert client.get("/v1/admin/items/t3").json()["known"] is False
