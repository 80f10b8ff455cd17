"""The traffic simulator without a server: the pure shop model, and the HTTP runner
against an in-process ``httpx.MockTransport`` (batching, retries, identify ordering)."""

from __future__ import annotations

import argparse
import json
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from core.settings import get_settings
from schemas import CatalogItem, EventBatch, IdentifyRequest, ItemBatch, ItemUpdate, TrackingEvent
from streamrec.client import RetryPolicy
from streamrec.sim import runner, simulate
from streamrec.sim.simulate import (
    Identify,
    ShopModel,
    SimulationConfig,
    SimulationError,
    StockChange,
    Track,
    config_from_args,
    configure_parser,
    run_simulation,
)


def first_actions(model: ShopModel, n: int) -> list[simulate.Action]:
    actions = []
    for action in model.traffic():
        actions.append(action)
        if len(actions) >= n:
            break
    return actions


# --- the pure model -----------------------------------------------------------------------
def test_same_seed_same_shop_and_traffic() -> None:
    a, b = ShopModel(seed=7), ShopModel(seed=7)
    assert a.make_catalog() == b.make_catalog()
    assert first_actions(a, 3000) == first_actions(b, 3000)
    other = ShopModel(seed=8)
    assert other.make_catalog() != ShopModel(seed=7).make_catalog()
    assert first_actions(other, 300) != first_actions(ShopModel(seed=7), 300)


def test_make_catalog_does_not_change_the_traffic() -> None:
    a, b = ShopModel(seed=3), ShopModel(seed=3)
    a.make_catalog()
    assert first_actions(a, 500) == first_actions(b, 500)


def test_every_generated_payload_validates() -> None:
    model = ShopModel(seed=1)
    for item in model.make_catalog():
        CatalogItem.model_validate(item)
    seen_types: Counter[str] = Counter()
    for action in first_actions(model, 30_000):
        if isinstance(action, Track):
            event = TrackingEvent.model_validate(action.event)
            seen_types[event.type] += 1
        elif isinstance(action, Identify):
            IdentifyRequest(anonymous_id=action.anonymous_id, user_id=action.user_id)
        else:
            ItemUpdate.model_validate(action.body)
    assert set(seen_types) == {
        "view",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "impression",
        "click",
    }
    assert seen_types["view"] > seen_types["add_to_cart"] > seen_types["purchase"]


def test_event_ids_are_unique_uuid4() -> None:
    events = ShopModel(seed=2).sample_events(20_000)
    ids = [event["event_id"] for event in events]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(event_id).version == 4 for event_id in ids[:500])


def test_event_mix_follows_the_funnel() -> None:
    types = Counter(event["type"] for event in ShopModel(seed=4).sample_events(40_000))
    cart_per_view = types["add_to_cart"] / types["view"]
    purchase_per_cart = types["purchase"] / types["add_to_cart"]
    assert 0.10 < cart_per_view < 0.18
    assert 0.15 < purchase_per_cart < 0.35
    assert 0 < types["remove_from_cart"] < types["add_to_cart"]
    assert 0 < types["impression"] < 0.1 * types["view"]


@pytest.mark.parametrize(("items", "share"), [(500, 0.05), (1000, 0.2), (50, 0.0)])
def test_out_of_stock_share(items: int, share: float) -> None:
    catalog = ShopModel(items=items, out_of_stock=share).make_catalog()
    assert len(catalog) == items
    assert sum(not item["in_stock"] for item in catalog) == round(items * share)


def test_catalog_looks_like_a_shop() -> None:
    model = ShopModel()
    catalog = model.make_catalog()
    assert len({item["item_id"] for item in catalog}) == len(catalog)
    assert len({item["name"] for item in catalog}) == len(catalog)
    assert len({item["category"] for item in catalog}) == 20
    prices = sorted(item["price"] for item in catalog)
    median = prices[len(prices) // 2]
    assert prices[0] > 0 and prices[-1] > 4 * median  # log-normal: a long right tail


def test_stock_churn_stays_near_the_starting_share() -> None:
    model = ShopModel(items=500, out_of_stock=0.05)
    counts = []
    for _ in range(3000):
        change = model.stock_change()
        assert change.body["in_stock"] == model.items[int(change.item_id[4:]) - 1].in_stock
        counts.append(sum(not item.in_stock for item in model.items))
    assert 10 <= sum(counts[-1000:]) / 1000 <= 45


def test_popularity_is_skewed() -> None:
    model = ShopModel(seed=5)
    views = Counter(e["item_id"] for e in model.sample_events(40_000) if e["type"] == "view")
    total = sum(views.values())
    top_tenth = sum(count for _, count in views.most_common(len(model.items) // 10))
    assert top_tenth / total > 0.4  # uniform would give 0.1
    assert views.most_common(1)[0][1] > 20 * total / len(model.items)
    popularity = sorted(model.item_popularity().values(), reverse=True)
    assert abs(sum(popularity) - 1.0) < 1e-9
    assert popularity[0] > 10 * popularity[len(popularity) // 2]


def test_shoppers_stick_to_their_tastes() -> None:
    model = ShopModel(seed=6)
    assert all(1 <= len(shopper.categories) <= 3 for shopper in model.shoppers)
    taste = {s.user_id: {model.categories[c] for c in s.categories} for s in model.shoppers}
    views = [e for e in model.sample_events(30_000) if e["type"] == "view" and "user_id" in e]
    coherent = sum(model.category_of(e["item_id"]) in taste[e["user_id"]] for e in views)
    assert coherent / len(views) > 0.75


def test_anonymous_visitors_and_identify_flow() -> None:
    model = ShopModel(seed=9, anonymous_share=0.2)
    anonymous_events: Counter[str] = Counter()
    identified: dict[str, str] = {}
    actions = first_actions(model, 40_000)
    for action in actions:
        if isinstance(action, Identify):
            assert anonymous_events[action.anonymous_id] > 0, "identify before any event"
            assert action.anonymous_id not in identified
            identified[action.anonymous_id] = action.user_id
        elif isinstance(action, Track) and "anonymous_id" in action.event:
            assert action.event["anonymous_id"] not in identified, "anonymous after login"
            assert "user_id" not in action.event
            anonymous_events[action.event["anonymous_id"]] += 1
    events = [a.event for a in actions if isinstance(a, Track)]
    anonymous_share = sum("anonymous_id" in e for e in events) / len(events)
    assert 0.05 < anonymous_share < 0.3
    assert 0.3 < len(identified) / len(anonymous_events) < 0.7  # about half log in
    assert set(identified.values()) <= {shopper.user_id for shopper in model.shoppers}


def test_no_anonymous_share_means_no_identify() -> None:
    actions = first_actions(ShopModel(anonymous_share=0.0), 5000)
    assert not any(isinstance(a, Identify) for a in actions)
    assert all("user_id" in a.event for a in actions if isinstance(a, Track))


def test_sample_events_are_only_events() -> None:
    events = ShopModel().sample_events(100)
    assert len(events) == 100 and all("type" in e for e in events)


# --- the runner, against an in-process fake API ---------------------------------------------
class FakeApi:
    """Records every request; validates bodies with the wire schemas like the API would."""

    def __init__(self, fail: Callable[[int], bool] = lambda n: False) -> None:
        self.fail = fail
        self.event_posts = 0
        self.batches: list[list[dict]] = []
        self.accepted_ids: list[str] = []
        self.acked_anonymous: Counter[str] = Counter()
        self.identify_checks: list[tuple[str, int]] = []
        self.item_chunks: list[int] = []
        self.puts: list[tuple[str, bool]] = []
        self.keys: Counter[tuple[str, str]] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        resource = path.split("/")[2] if path.startswith("/v1/") else path
        self.keys[(resource, request.headers.get("X-API-Key", ""))] += 1
        if path == "/readyz":
            return httpx.Response(200, json={"status": "ready", "checks": {}})
        body = json.loads(request.content)
        if path == "/v1/events":
            batch = EventBatch.model_validate(body)
            self.event_posts += 1
            self.batches.append(body["events"])
            if self.fail(self.event_posts):
                return httpx.Response(503, headers={"Retry-After": "0"})
            ids = [event.event_id or "" for event in batch.events]
            self.accepted_ids.extend(ids)
            for event in batch.events:
                if event.anonymous_id:
                    self.acked_anonymous[event.anonymous_id] += 1
            return httpx.Response(202, json={"accepted": len(ids), "event_ids": ids})
        if path == "/v1/identify":
            identify = IdentifyRequest.model_validate(body)
            self.identify_checks.append(
                (identify.anonymous_id, self.acked_anonymous[identify.anonymous_id])
            )
            return httpx.Response(202, json={"accepted": 1, "ids": []})
        if path == "/v1/items":
            self.item_chunks.append(len(ItemBatch.model_validate(body).items))
            return httpx.Response(202, json={"accepted": len(body["items"]), "ids": []})
        if request.method == "PUT" and path.startswith("/v1/items/"):
            self.puts.append((path.rsplit("/", 1)[1], ItemUpdate.model_validate(body).in_stock))
            return httpx.Response(202, json={"accepted": 1, "ids": []})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


async def simulate_against(api: FakeApi, **overrides: object) -> simulate.SimulationReport:
    options: dict = {"rate": 0.0, "max_events": 5000, "progress": False, **overrides}
    config = SimulationConfig(**options)
    return await run_simulation(config, transport=httpx.MockTransport(api))


async def test_batches_never_exceed_the_api_limits() -> None:
    api = FakeApi()
    report = await simulate_against(api, batch_size=2000, max_events=3000, items=2500)
    assert max(len(batch) for batch in api.batches) == 500
    assert max(api.item_chunks) == 1000 and sum(api.item_chunks) == 2500
    assert report.catalog_items == 2500
    assert report.events_sent == report.events_accepted == 3000
    assert report.batches == len(api.batches) >= 6 and report.ok


async def test_retries_repeat_the_same_event_ids() -> None:
    api = FakeApi(fail=lambda n: n % 3 == 1)  # the first attempt of many batches fails
    report = await simulate_against(api, batch_size=100, max_events=2000)
    assert report.retries > 0 and report.status_counts["503"] == report.retries
    assert report.events_accepted == report.events_sent == 2000
    assert len(api.accepted_ids) == len(set(api.accepted_ids)) == 2000
    retried = [b for b in api.batches if api.batches.count(b) > 1]
    assert retried, "a failed batch must be resent unchanged"
    assert report.ok


async def test_persistent_failure_is_counted_not_raised() -> None:
    api = FakeApi(fail=lambda n: True)
    report = await simulate_against(api, batch_size=50, max_events=100,
                                    retry=RetryPolicy(max_retries=1, base_delay_s=0))
    assert report.errors_5xx == report.batches >= 2
    assert len(api.batches) == 2 * report.batches  # one retry each, then given up
    assert report.events_accepted == 0 and not report.ok


async def test_identify_follows_the_visitors_acknowledged_events() -> None:
    api = FakeApi()
    report = await simulate_against(api, batch_size=50, max_events=6000, anonymous_share=0.5)
    assert report.identifies == len(api.identify_checks) > 10
    for anonymous_id, acked_before in api.identify_checks:
        assert acked_before == api.acked_anonymous[anonymous_id] > 0


async def test_events_carry_ordered_valid_timestamps() -> None:
    api = FakeApi()
    await simulate_against(api, batch_size=100, max_events=1000)
    for batch in api.batches:
        stamps = [TrackingEvent.model_validate(e).timestamp for e in batch]
        assert None not in stamps
        assert stamps == sorted(stamps)  # type: ignore[type-var]


async def test_keys_roles_and_report_contents() -> None:
    api = FakeApi()
    report = await simulate_against(
        api, tracking_key="t-key", admin_key="a-key", max_events=20_000, anonymous_share=0.3
    )
    assert {key for (kind, key) in api.keys if kind == "events"} == {"t-key"}
    assert {key for (kind, key) in api.keys if kind == "identify"} == {"t-key"}
    assert {key for (kind, key) in api.keys if kind == "items"} == {"a-key"}
    assert report.stock_changes == len(api.puts) > 0
    stock = {item["item_id"]: item["in_stock"] for item in ShopModel().make_catalog()}
    stock.update(api.puts)  # in order: the last PUT of an item wins
    assert report.out_of_stock_items == [i for i, in_stock in stock.items() if not in_stock]
    assert report.items == [f"sku-{n}" for n in range(1, 501)]
    assert report.users and all(u.startswith("u") for u in report.users)
    assert sum(report.event_types.values()) == report.events_sent
    json.dumps(report.to_dict())


async def test_no_catalog_means_no_admin_writes() -> None:
    api = FakeApi()
    report = await simulate_against(api, catalog=False, max_events=20_000)
    assert not api.item_chunks and not api.puts
    assert report.catalog_items == 0 and report.out_of_stock_items == []


async def test_rate_is_paced() -> None:
    # Pacing means never faster than the rate. Both checks are one-sided on purpose: a
    # loaded machine may only be slower (speed lives in benchmarks, not tests).
    report = await simulate_against(FakeApi(), rate=2000.0, max_events=1000)
    assert report.events_sent == 1000
    assert report.elapsed_s >= 0.45  # 1,000 events at 2,000/s take at least ~0.5 s


async def test_duration_run_never_exceeds_its_rate() -> None:
    report = await simulate_against(FakeApi(), rate=2000.0, duration_s=0.5, max_events=None)
    batch = SimulationConfig(rate=2000.0).effective_batch_size
    assert 0 < report.events_sent <= 1000 + batch  # at most one batch past the 0.5 s budget


async def test_refused_key_stops_the_run() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready", "checks": {}})
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})

    config = SimulationConfig(max_events=100, rate=0, progress=False)
    with pytest.raises(SimulationError, match="401"):
        await run_simulation(config, transport=httpx.MockTransport(refuse))
    with pytest.raises(SimulationError, match="401"):
        config.catalog = False
        await run_simulation(config, transport=httpx.MockTransport(refuse))


async def test_unreachable_api_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(runner, "READY_TIMEOUT_S", 0.3)
    config = SimulationConfig(max_events=10, progress=False)
    with pytest.raises(SimulationError, match="not reachable"):
        await run_simulation(config, transport=httpx.MockTransport(down))


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SimulationConfig(rate=-1)
    with pytest.raises(ValueError):
        SimulationConfig(batch_size=0)
    assert SimulationConfig(batch_size=5000).effective_batch_size == 500
    assert SimulationConfig(rate=100, duration_s=3).event_budget == 300
    assert SimulationConfig(max_events=7).event_budget == 7
    assert SimulationConfig(rate=0).event_budget is None


# --- command line ---------------------------------------------------------------------------
def test_parser_defaults_and_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_TRACKING_KEYS", " track-1 , track-2")
    monkeypatch.setenv("STREAMREC_ADMIN_KEYS", "admin-1")
    monkeypatch.delenv("STREAMREC_API_HOST", raising=False)
    monkeypatch.delenv("STREAMREC_API_PORT", raising=False)
    get_settings.cache_clear()
    try:
        parser = argparse.ArgumentParser()
        configure_parser(parser)
        config = config_from_args(parser.parse_args([]))
        assert config == SimulationConfig(tracking_key="track-1", admin_key="admin-1")
        config = config_from_args(
            parser.parse_args(
                "--events 10 --rate 0 --no-catalog --quiet --batch-size 20 --seed 3 "
                "--anonymous-share 0.5 --out-of-stock 0.1 --users 5 --items 9 "
                "--tracking-key x --api-url http://h:1".split()
            )
        )
    finally:
        get_settings.cache_clear()
    assert (config.max_events, config.rate) == (10, 0)
    assert (config.catalog, config.progress) == (False, False)
    assert (config.batch_size, config.seed, config.users, config.items) == (20, 3, 5, 9)
    assert (config.anonymous_share, config.out_of_stock) == (0.5, 0.1)
    assert (config.tracking_key, config.admin_key, config.api_url) == ("x", "admin-1", "http://h:1")


def test_api_url_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_API_HOST", "0.0.0.0")
    monkeypatch.setenv("STREAMREC_API_PORT", "8123")
    get_settings.cache_clear()
    try:
        parser = argparse.ArgumentParser()
        configure_parser(parser)
        assert config_from_args(parser.parse_args([])).api_url == "http://127.0.0.1:8123"
    finally:
        get_settings.cache_clear()


def test_stock_change_is_an_action_type() -> None:
    change = ShopModel().stock_change()
    assert isinstance(change, StockChange) and change.item_id.startswith("sku-")
