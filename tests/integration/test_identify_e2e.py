"""Identify end to end (API.md "Tracking": from the identify on, the anonymous history
counts for the user): a real API process and worker process on the session's Tansu and
redis-server, checked from outside through the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.integration.conftest import api_process
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

TRACK, READ, ADMIN = "track-key-01234567", "read-key-012345678", "admin-key-01234567"
HT, HR, HA = ({"X-API-Key": key} for key in (TRACK, READ, ADMIN))
HISTORY_MAX = 5


@pytest.fixture
def stack(settings: Settings, start_worker: Callable[..., Any], tmp_path: Any
          ) -> Iterator[tuple[httpx.Client, Settings]]:
    start_worker(history_max=HISTORY_MAX)
    with api_process(settings, tmp_path, tracking_keys=TRACK, read_keys=READ,
                     admin_keys=ADMIN) as running:
        yield running


def bought(client: httpx.Client, entity: str) -> set[str]:
    """The purchases the admin lookup shows for a user or anonymous id."""
    answer = client.get(f"/v1/admin/users/{entity}", headers=HA)
    assert answer.status_code == 200, answer.text
    return {item["item_id"] for item in answer.json()["purchased_items"]}


def test_a_purchase_older_than_the_history_cap_is_the_users_after_identify(
        stack: tuple[httpx.Client, Settings]) -> None:
    # The anonymous id bought an item, then browsed more than the worker's history keeps:
    # at the identify the user must still count that purchase (it was handed over only
    # when it was among the newest HISTORY_MAX events, and the user's list then
    # recommended the item the shopper had bought).
    client, _ = stack
    items = [{"item_id": f"sku-{i}", "name": f"Item {i}", "price": 1.0 + i} for i in range(12)]
    assert client.post("/v1/items", json={"items": items}, headers=HA).status_code == 202
    anon = "anon-long-visit"
    events = [{"type": "purchase", "anonymous_id": anon, "item_id": "sku-0", "price": 1.0},
              *({"type": "view", "anonymous_id": anon, "item_id": f"sku-{1 + i % 4}"}
                for i in range(3 * HISTORY_MAX))]
    assert client.post("/v1/events", json={"events": events}, headers=HT).status_code == 202
    wait_for(lambda: bought(client, anon) == {"sku-0"}, 30, "the anonymous purchase")
    answer = client.post("/v1/identify", json={"anonymous_id": anon, "user_id": "u-long"},
                         headers=HT)
    assert answer.status_code == 202, answer.text
    wait_for(lambda: bought(client, "u-long") == {"sku-0"}, 15,
             "the anonymous purchase counted for the user")
    listed = client.get("/v1/users/u-long/recommendations?n=100", headers=HR).json()
    assert listed["items"] and "sku-0" not in {i["item_id"] for i in listed["items"]}
    # Identifying the same pair again hands nothing new over: still one purchase.
    assert client.post("/v1/identify", json={"anonymous_id": anon, "user_id": "u-long"},
                       headers=HT).status_code == 202
    assert bought(client, "u-long") == {"sku-0"}


def carted(client: httpx.Client, entity: str) -> set[str]:
    """The cart the admin lookup shows for a user or anonymous id."""
    answer = client.get(f"/v1/admin/users/{entity}", headers=HA)
    assert answer.status_code == 200, answer.text
    return {item["item_id"] for item in answer.json()["cart"]}


def test_a_cart_older_than_the_history_cap_is_the_users_after_identify(
        stack: tuple[httpx.Client, Settings]) -> None:
    # The anonymous id carted items, then browsed more than the worker's history keeps:
    # the user must get the whole cart at the identify (only the additions among the
    # newest HISTORY_MAX events were handed over), without what was removed or bought.
    client, _ = stack
    anon = "anon-long-cart"
    events = [{"type": "add_to_cart", "anonymous_id": anon, "item_id": f"cart-{i}"}
              for i in range(4)]
    events += [{"type": "remove_from_cart", "anonymous_id": anon, "item_id": "cart-1"},
               {"type": "purchase", "anonymous_id": anon, "item_id": "cart-2"}]
    events += [{"type": "view", "anonymous_id": anon, "item_id": f"sku-{i}"}
               for i in range(3 * HISTORY_MAX)]
    assert client.post("/v1/events", json={"events": events}, headers=HT).status_code == 202
    wait_for(lambda: carted(client, anon) == {"cart-0", "cart-3"}, 30, "the anonymous cart")
    answer = client.post("/v1/identify", json={"anonymous_id": anon, "user_id": "u-cart"},
                         headers=HT)
    assert answer.status_code == 202, answer.text
    wait_for(lambda: carted(client, "u-cart") == {"cart-0", "cart-3"}, 15,
             "the anonymous cart in the user's")
    listed = client.get("/v1/users/u-cart/recommendations?n=100&context=cart&explain=true",
                        headers=HR).json()
    assert not {"cart-0", "cart-3"} & {i["item_id"] for i in listed["items"]}
    assert bought(client, "u-cart") == {"cart-2"}


def test_a_login_keeps_the_buy_again_of_what_the_shopper_rebought(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Any) -> None:
    # Two anonymous shoppers bought an item twice each: a consumable (repeat rate 1/2)
    # with two buyers. Their identifies forwarded copies that made each user a second
    # buyer, so the rate fell to 0 and buy-again vanished for everyone at login.
    start_worker()
    with api_process(settings, tmp_path, buy_again=True, buy_again_min_buyers=2,
                     buy_again_min_repeat_rate=0.4) as (client, _):
        events = [{"type": "purchase", "anonymous_id": f"anon-rebuy-{k}",
                   "item_id": "soap", "event_id": f"rebuy-{k}-{j}"}
                  for k in range(2) for j in range(2)]
        assert client.post("/v1/events", json={"events": events}).status_code == 202

        def again(entity: str) -> set[str]:
            answer = client.get(f"/v1/users/{entity}/recommendations?context=checkout")
            assert answer.status_code == 200, answer.text
            return {i["item_id"] for i in answer.json()["items"] if i["reason"] == "buy_again"}

        wait_for(lambda: again("anon-rebuy-0") == {"soap"}, 30, "buy-again before login")
        for k in range(2):
            assert client.post("/v1/identify", json={"anonymous_id": f"anon-rebuy-{k}",
                                                     "user_id": f"u-rebuy-{k}"}
                               ).status_code == 202
        for k in range(2):
            wait_for(lambda: bought(client, f"u-rebuy-{k}") == {"soap"},  # noqa: B023
                     15, "the handed purchases")
        assert again("u-rebuy-0") == {"soap"} and again("anon-rebuy-0") == {"soap"}
