"""Realistic synthetic shop traffic, sent through the public HTTP API (``streamrec simulate``).

Two layers, so the shop model can be tested without any server:

* :class:`ShopModel` is pure and seeded. It holds a catalog (readable names, log-normal
  prices, ~20 categories, a share out of stock), shoppers with 1–3 preferred categories
  and Zipf item popularity, and produces interleaved shopping sessions as :data:`Action`
  values: tracking events, identify calls of anonymous visitors who log in, and stock
  changes.
* :func:`run_simulation` posts the catalog, then paces the model's actions against a
  running API with a small pool of async HTTP connections: events go in batches with
  client ``event_id``\\s (a retried batch is the same batch, so retries are idempotent),
  an identify is posted only after the visitor's anonymous events were accepted, and
  stock changes are ``PUT`` in the order they happened.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from tqdm import tqdm

log = logging.getLogger(__name__)

#: The API's limits (API.md): events per ``POST /v1/events``, items per ``POST /v1/items``.
MAX_BATCH_EVENTS = 500
MAX_BATCH_ITEMS = 1000
#: Event batches in flight at once; the connection pool has two more for identify/stock.
MAX_IN_FLIGHT = 8
#: Statuses that mean "nothing was taken, try the same request again".
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRIES = 6
#: How long to wait for ``/readyz`` before sending anyway (the API may still be starting).
READY_TIMEOUT_S = 30.0

# --- word lists: every category has nouns that fit it, names read like a real shop -----
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "kitchen": ("Teapot", "Skillet", "Knife Set", "Cutting Board", "Mixing Bowl"),
    "garden": ("Planter", "Garden Hose", "Pruner", "Seed Kit", "Watering Can"),
    "books": ("Novel", "Cookbook", "Atlas", "Biography", "Poetry Collection"),
    "music": ("Vinyl Record", "Ukulele", "Songbook", "Metronome", "Harmonica"),
    "toys": ("Puzzle", "Kite", "Building Set", "Plush Bear", "Yo-Yo"),
    "sports": ("Yoga Mat", "Dumbbell", "Jump Rope", "Tennis Racket", "Water Bottle"),
    "outdoor": ("Tent", "Sleeping Bag", "Lantern", "Backpack", "Camp Stove"),
    "beauty": ("Face Cream", "Lip Balm", "Hair Oil", "Perfume", "Soap Bar"),
    "office": ("Notebook", "Fountain Pen", "Desk Lamp", "Stapler", "Planner"),
    "pets": ("Dog Bed", "Cat Toy", "Leash", "Pet Bowl", "Bird Feeder"),
    "tools": ("Hammer", "Drill", "Tape Measure", "Screwdriver Set", "Toolbox"),
    "audio": ("Headphones", "Speaker", "Microphone", "Turntable", "Earbuds"),
    "photo": ("Camera", "Tripod", "Lens", "Photo Album", "Camera Bag"),
    "games": ("Board Game", "Card Deck", "Chess Set", "Dice Set", "Game Controller"),
    "fashion": ("Scarf", "Jacket", "Sweater", "Hat", "Belt"),
    "shoes": ("Sneakers", "Boots", "Sandals", "Slippers", "Loafers"),
    "jewelry": ("Ring", "Necklace", "Bracelet", "Earrings", "Watch"),
    "coffee": ("Espresso Beans", "Coffee Grinder", "French Press", "Mug", "Pour-Over Kit"),
    "tea": ("Green Tea", "Tea Infuser", "Chai Blend", "Matcha Whisk", "Tea Tin"),
    "baby": ("Onesie", "Rattle", "Baby Blanket", "Teether", "Night Light"),
}
ADJECTIVES: tuple[str, ...] = (
    "Rustic", "Compact", "Classic", "Vivid", "Silent", "Golden", "Nordic", "Urban", "Cozy",
    "Bold", "Sleek", "Vintage", "Smart", "Tiny", "Grand", "Bright", "Gentle", "Swift",
    "Solid", "Handy", "Fresh", "Lunar", "Coastal", "Alpine", "Royal", "Modern", "Simple",
    "Wild", "Quiet", "Crisp",
)  # fmt: skip
CHANNELS: tuple[tuple[str, float], ...] = (("web", 0.7), ("ios", 0.2), ("android", 0.1))


# --- the pure shop model ------------------------------------------------------------------
@dataclass
class ShopItem:
    """One catalog item as the model knows it (``in_stock`` changes with stock churn)."""

    item_id: str
    name: str
    price: float
    category: str
    in_stock: bool = True

    def body(self) -> dict[str, Any]:
        """The item's full state as a ``PUT /v1/items/{id}`` body (schemas.ItemUpdate)."""
        return {
            "name": self.name,
            "price": self.price,
            "currency": "EUR",
            "category": self.category,
            "in_stock": self.in_stock,
        }


@dataclass(frozen=True)
class Shopper:
    """A shopper's latent taste: the indexes of the categories they mostly browse."""

    user_id: str
    categories: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Track:
    """Post this tracking event (a ``schemas.TrackingEvent`` dict, without timestamp)."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Identify:
    """An anonymous visitor logs in: post ``/v1/identify`` after their earlier events."""

    anonymous_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class StockChange:
    """An item went out of / back in stock: ``PUT /v1/items/{item_id}`` with ``body``."""

    item_id: str
    body: dict[str, Any]


Action = Track | Identify | StockChange


class _Cumulative:
    """Weighted sampling by bisecting cumulative weights: O(log n), no per-call allocation."""

    __slots__ = ("cum", "total")

    def __init__(self, weights: list[float]) -> None:
        self.cum: list[float] = []
        running = 0.0
        for weight in weights:
            running += weight
            self.cum.append(running)
        self.total = running

    def pick(self, rng: random.Random) -> int:
        return min(bisect.bisect_right(self.cum, rng.random() * self.total), len(self.cum) - 1)


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Unnormalized Zipf weights ``1 / rank**exponent`` for ranks 1..n."""
    return [1.0 / (rank**exponent) for rank in range(1, n + 1)]


class ShopModel:
    """A seeded synthetic shop: catalog, shopper tastes and session behaviour.

    Item popularity is Zipf at two levels: categories by category rank, and items within
    a category by their rank in it, so a few items dominate overall and in every category.
    Each shopper prefers 1–3 categories (popular ones more often) and draws most views
    from them; anonymous visitors either log in midway (as a known shopper, so their
    anonymous history matches the user's taste) or stay anonymous with a taste of their
    own. Everything comes from one ``random.Random(seed)``: same arguments, same output.
    """

    def __init__(
        self,
        *,
        items: int = 500,
        users: int = 300,
        out_of_stock: float = 0.05,
        anonymous_share: float = 0.2,
        seed: int = 42,
        zipf_exponent: float = 1.1,
        categories: int = 20,
        taste_share: float = 0.85,
        login_share: float = 0.5,
        cart_rate: float = 0.15,
        purchase_rate: float = 0.3,
        remove_rate: float = 0.05,
        impression_rate: float = 0.05,
        stock_churn: float = 0.001,
        concurrent_sessions: int = 20,
    ) -> None:
        if items < 1 or users < 1:
            raise ValueError("items and users must be at least 1")
        if not 1 <= categories <= len(CATEGORY_NOUNS):
            raise ValueError(f"categories must be within 1..{len(CATEGORY_NOUNS)}")
        for name, share in (("out_of_stock", out_of_stock), ("anonymous_share", anonymous_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {share}")
        self._rng = random.Random(seed)
        self.anonymous_share = anonymous_share
        self.taste_share = taste_share
        self.login_share = login_share
        self.cart_rate = cart_rate
        self.purchase_rate = purchase_rate
        self.remove_rate = remove_rate
        self.impression_rate = impression_rate
        self.stock_churn = stock_churn
        self.concurrent_sessions = max(1, concurrent_sessions)
        self.categories: list[str] = list(CATEGORY_NOUNS)[: min(categories, items)]
        self.items: list[ShopItem] = []
        self._build_catalog(items, out_of_stock, zipf_exponent)
        self.shoppers: list[Shopper] = [
            Shopper(f"u{n}", self._draw_taste()) for n in range(1, users + 1)
        ]
        activity = zipf_weights(users, 0.7)  # a few shoppers come back far more often
        self._rng.shuffle(activity)
        self._shopper_pick = _Cumulative(activity)
        self._anon_counter = 0

    # -- catalog -------------------------------------------------------------------------
    def _build_catalog(self, n_items: int, out_of_stock: float, exponent: float) -> None:
        rng = self._rng
        n_cats = len(self.categories)
        # every category gets one item, the rest land uniformly at random
        assignment = list(range(n_cats)) + [rng.randrange(n_cats) for _ in range(n_items - n_cats)]
        price_level = [rng.uniform(-0.7, 0.7) for _ in range(n_cats)]
        seen_names: Counter[str] = Counter()
        for number, cat in enumerate(assignment, start=1):
            category = self.categories[cat]
            base = f"{rng.choice(ADJECTIVES)} {rng.choice(CATEGORY_NOUNS[category])}"
            seen_names[base] += 1
            name = base if seen_names[base] == 1 else f"{base} No. {seen_names[base]}"
            price = max(0.5, round(rng.lognormvariate(3.2 + price_level[cat], 0.8), 2))
            self.items.append(ShopItem(f"sku-{number}", name, price, category))
        sold_out = rng.sample(range(n_items), round(n_items * out_of_stock))
        for index in sold_out:
            self.items[index].in_stock = False
        self._stock_target = max(1, len(sold_out))

        # popularity: Zipf over category ranks, and over item ranks inside each category
        members: list[list[int]] = [[] for _ in range(n_cats)]
        for index, cat in enumerate(assignment):
            members[cat].append(index)
        for group in members:
            rng.shuffle(group)  # position in the list = popularity rank in the category
        self._members = members
        self._within = [_Cumulative(zipf_weights(len(group), exponent)) for group in members]
        cat_weights = zipf_weights(n_cats, exponent)
        rng.shuffle(cat_weights)
        self._category_pick = _Cumulative(cat_weights)
        total = sum(cat_weights)
        popularity = [0.0] * n_items
        for cat, group in enumerate(members):
            within = self._within[cat]
            previous = 0.0
            for index, running in zip(group, within.cum, strict=True):
                popularity[index] = cat_weights[cat] / total * (running - previous) / within.total
                previous = running
        self.popularity = popularity
        self._global_pick = _Cumulative(popularity)

    def make_catalog(self) -> list[dict[str, Any]]:
        """The catalog as ``POST /v1/items`` item dicts (schemas.CatalogItem), current stock.

        Called before any traffic it is the initial catalog; the model's random stream is
        not touched, so calling it never changes the traffic that follows.
        """
        return [{"item_id": item.item_id, **item.body()} for item in self.items]

    def category_of(self, item_id: str) -> str:
        """Category name of a catalog item id (``sku-N``)."""
        return self.items[int(item_id.removeprefix("sku-")) - 1].category

    def _draw_taste(self) -> tuple[int, ...]:
        """1–3 distinct preferred categories, popular categories more likely."""
        wanted = min(self._rng.choice((1, 1, 2, 2, 2, 3)), len(self.categories))
        chosen: list[int] = []
        while len(chosen) < wanted:
            cat = self._category_pick.pick(self._rng)
            if cat not in chosen:
                chosen.append(cat)
        return tuple(chosen)

    # -- sampling helpers ----------------------------------------------------------------
    def _pick_item(self, taste: tuple[int, ...]) -> ShopItem:
        rng = self._rng
        if rng.random() < self.taste_share:
            cat = taste[rng.randrange(len(taste))]
            return self.items[self._members[cat][self._within[cat].pick(rng)]]
        return self.items[self._global_pick.pick(rng)]

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _event(
        self, etype: str, who: dict[str, str], page: str, channel: str, item: ShopItem | None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {"event_id": self._event_id(), "type": etype, **who}
        if item is not None:
            event["item_id"] = item.item_id
        event["context"] = {"page": page, "channel": channel}
        return event

    # -- behaviour -----------------------------------------------------------------------
    def session(self) -> Iterator[Action]:
        """One shopping session: views, carts, maybe a login, then checkout.

        A logged-in shopper (or an anonymous visitor) views 1–20 items, mostly from their
        preferred categories; ≈15 % of in-stock views add to cart, carts are occasionally
        trimmed, ≈30 % of carted items are bought at checkout. A small share of views
        starts from a recommendation widget (impression, sometimes a click).
        """
        rng = self._rng
        shopper = self.shoppers[self._shopper_pick.pick(rng)]
        taste = shopper.categories
        who: dict[str, str] = {"user_id": shopper.user_id}
        login_after: int | None = None
        n_views = 1 + min(19, int(rng.expovariate(0.25)))
        anonymous_id = ""
        if rng.random() < self.anonymous_share:
            self._anon_counter += 1
            anonymous_id = f"anon-{self._anon_counter}-{rng.getrandbits(32):08x}"
            who = {"anonymous_id": anonymous_id}
            if rng.random() < self.login_share:
                login_after = rng.randint(1, n_views)  # at least one anonymous view first
            else:
                taste = self._draw_taste()  # a visitor we never learn the name of
        channel = self._channel()
        cart: dict[str, tuple[ShopItem, int]] = {}
        for view in range(n_views):
            if login_after == view:
                yield Identify(anonymous_id, shopper.user_id)
                who = {"user_id": shopper.user_id}
            item = self._pick_item(taste)
            if rng.random() < self.impression_rate:
                shown = list(dict.fromkeys(self._pick_item(taste).item_id for _ in range(6)))
                if item.item_id not in shown:
                    shown[-1] = item.item_id
                impression = self._event("impression", who, "home", channel, None)
                impression["item_ids"] = shown
                yield Track(impression)
                if rng.random() < 0.3:
                    yield Track(self._event("click", who, "home", channel, item))
            yield Track(self._event("view", who, "product", channel, item))
            if item.in_stock and item.item_id not in cart and rng.random() < self.cart_rate:
                quantity = 1 if rng.random() < 0.85 else rng.randint(2, 4)
                cart[item.item_id] = (item, quantity)
                event = self._event("add_to_cart", who, "product", channel, item)
                event.update(quantity=quantity, price=item.price)
                yield Track(event)
            if cart and rng.random() < self.remove_rate:
                dropped, quantity = cart.pop(rng.choice(list(cart)))
                event = self._event("remove_from_cart", who, "cart", channel, dropped)
                event["quantity"] = quantity
                yield Track(event)
        if login_after == n_views:  # logs in to check out
            yield Identify(anonymous_id, shopper.user_id)
            who = {"user_id": shopper.user_id}
        for item, quantity in cart.values():
            if item.in_stock and rng.random() < self.purchase_rate:
                event = self._event("purchase", who, "checkout", channel, item)
                event.update(quantity=quantity, price=item.price)
                yield Track(event)

    def _channel(self) -> str:
        draw = self._rng.random()
        for channel, share in CHANNELS:
            if draw < share:
                return channel
            draw -= share
        return CHANNELS[0][0]

    def stock_change(self) -> StockChange:
        """Flip one item's stock; mean-reverting, so the out-of-stock share stays near its start.

        An item comes back with probability ``out / (out + target)``: above the starting
        count restocks win, below it sell-outs do.
        """
        rng = self._rng
        out = [item for item in self.items if not item.in_stock]
        comes_back = len(out) / (len(out) + self._stock_target)
        if out and (rng.random() < comes_back or len(out) == len(self.items)):
            item = rng.choice(out)
        else:
            item = rng.choice([item for item in self.items if item.in_stock])
        item.in_stock = not item.in_stock
        return StockChange(item.item_id, item.body())

    def traffic(self) -> Iterator[Action]:
        """Endless shop traffic: ``concurrent_sessions`` sessions interleaved at random.

        Interleaving is what real traffic looks like to the API (a batch holds several
        shoppers' events), with an occasional stock change in between.
        """
        rng = self._rng
        active = [self.session() for _ in range(self.concurrent_sessions)]
        while True:
            if rng.random() < self.stock_churn:
                yield self.stock_change()
            slot = rng.randrange(len(active))
            action = next(active[slot], None)
            if action is None:
                active[slot] = self.session()
            else:
                yield action

    def sample_events(self, n: int) -> list[dict[str, Any]]:
        """The first ``n`` tracking event dicts of :meth:`traffic` (for tests, benchmarks)."""
        events: list[dict[str, Any]] = []
        for action in self.traffic():
            if len(events) >= n:
                break
            if isinstance(action, Track):
                events.append(action.event)
        return events

    def item_popularity(self) -> dict[str, float]:
        """Each item's overall probability of being drawn by the popularity model."""
        return {item.item_id: p for item, p in zip(self.items, self.popularity, strict=True)}


# --- configuration and report -------------------------------------------------------------
@dataclass
class SimulationConfig:
    """What to simulate and where. ``max_events`` (when set) replaces ``duration_s``.

    ``rate`` is events per second (0 = as fast as the API accepts them); ``batch_size``
    above the API's limit of 500 is capped at 500. ``catalog=False`` skips every admin
    write (the catalog post and stock churn), e.g. when a previous run posted it.
    """

    api_url: str = "http://127.0.0.1:8000"
    rate: float = 200.0
    duration_s: float = 30.0
    max_events: int | None = None
    users: int = 300
    items: int = 500
    out_of_stock: float = 0.05
    anonymous_share: float = 0.2
    batch_size: int = 50
    seed: int = 42
    tracking_key: str = ""
    admin_key: str = ""
    catalog: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rate < 0 or self.duration_s < 0:
            raise ValueError("rate and duration_s must not be negative")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError("max_events must not be negative")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def effective_batch_size(self) -> int:
        """Events per request: ``batch_size`` capped at the API's limit."""
        return min(self.batch_size, MAX_BATCH_EVENTS)

    @property
    def event_budget(self) -> int | None:
        """Events to send: ``max_events``, else ``rate × duration``; None = until time's up."""
        if self.max_events is not None:
            return self.max_events
        return round(self.rate * self.duration_s) if self.rate > 0 else None


@dataclass
class SimulationReport:
    """Outcome of a run; every count is of requests unless it says events.

    ``rejected_4xx`` counts requests the API finally refused (4xx other than 429),
    ``errors_5xx`` requests that still failed after every retry (5xx, 429 or no
    connection), ``retries`` every repeated attempt. ``users`` are the user ids that
    appeared (events or identify), ``items`` the whole catalog, ``out_of_stock_items``
    the items the API confirmed as out of stock at the end.
    """

    events_sent: int = 0
    events_accepted: int = 0
    batches: int = 0
    rejected_4xx: int = 0
    errors_5xx: int = 0
    retries: int = 0
    identifies: int = 0
    catalog_items: int = 0
    stock_changes: int = 0
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    out_of_stock_items: list[str] = field(default_factory=list)
    event_types: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every event accepted and no request failed."""
        return (
            self.events_accepted == self.events_sent
            and self.rejected_4xx == 0
            and self.errors_5xx == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """Two human-readable lines."""
        return (
            f"sent {self.events_sent} events in {self.elapsed_s:.1f} s "
            f"({self.achieved_rate:.0f} accepted/s): {self.events_accepted} accepted in "
            f"{self.batches} batches; {self.rejected_4xx} rejected (4xx), "
            f"{self.errors_5xx} failed (5xx/connection), {self.retries} retries\n"
            f"catalog {self.catalog_items} items ({len(self.out_of_stock_items)} out of stock), "
            f"{self.stock_changes} stock changes; {len(self.users)} users, "
            f"{self.identifies} identify calls"
        )


class SimulationError(RuntimeError):
    """The run cannot go on: API unreachable, key refused, or catalog not accepted."""


# --- the HTTP runner ----------------------------------------------------------------------
def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds")


def _id_order(value: str) -> tuple[str, int]:
    """Sort key putting ``u2`` before ``u10``."""
    match = re.fullmatch(r"(.*?)(\d+)", value)
    return (match.group(1), int(match.group(2))) if match else (value, -1)


class _Runner:
    """One simulation against one API: counters, pacing, retries and ordering."""

    def __init__(self, config: SimulationConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client
        self.model = ShopModel(
            items=config.items,
            users=config.users,
            out_of_stock=config.out_of_stock,
            anonymous_share=config.anonymous_share,
            seed=config.seed,
        )
        self.report = SimulationReport(items=[item.item_id for item in self.model.items])
        self._jitter = random.Random(config.seed + 1)  # timing only, never content
        self._statuses: Counter[str] = Counter()
        self._types: Counter[str] = Counter()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        # batches complete out of order; ``_low`` = every batch below it has completed
        self._completed: set[int] = set()
        self._low = 0
        self._progress_cond = asyncio.Condition()
        self._anon_batch: dict[str, int] = {}  # anonymous id → last batch holding its events
        self._stock_lock = asyncio.Lock()  # stock PUTs go out in the order they happened
        self._stock: dict[str, bool] = {}  # stock the API confirmed
        self._users: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: str | None = None
        self._bar: Any = None

    # -- requests ------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(5.0, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(3.0, 0.1 * 2**attempt) * self._jitter.uniform(0.5, 1.0)

    async def request(
        self, method: str, path: str, body: dict[str, Any], key: str
    ) -> httpx.Response | None:
        """Send with retries on 429/502/503/504 and connection errors; None unless 2xx.

        The body is built once, so a retry repeats exactly the same event ids.
        """
        headers = {"X-API-Key": key} if key else {}
        delay = 0.0
        response: httpx.Response | None = None
        for attempt in range(MAX_RETRIES + 1):
            if attempt:
                self.report.retries += 1
                await asyncio.sleep(delay)
            try:
                response = await self.client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                self._statuses["connection_error"] += 1
                log.debug("%s %s: %s", method, path, exc)
                response = None
                delay = self._backoff(attempt, None)
                continue
            self._statuses[str(response.status_code)] += 1
            if response.status_code not in RETRY_STATUSES:
                break
            delay = self._backoff(attempt, response.headers.get("Retry-After"))
        if response is not None and response.is_success:
            return response
        if response is None or response.status_code >= 500 or response.status_code == 429:
            self.report.errors_5xx += 1
            outcome = "no connection" if response is None else f"status {response.status_code}"
            log.warning("%s %s failed (%s, attempt %d)", method, path, outcome, attempt + 1)
            return None
        self.report.rejected_4xx += 1
        log.warning("%s %s → %d: %s", method, path, response.status_code, response.text[:500])
        if response.status_code in (401, 403):
            self._fatal = f"{method} {path} refused with {response.status_code}: check the key"
        return None

    async def wait_ready(self) -> None:
        """Wait until ``/readyz`` says ready; fail if the API never answers at all."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        answered = False
        last = ""
        while time.monotonic() < deadline:
            try:
                response = await self.client.get("/readyz")
                answered = True
                if response.status_code < 500:
                    return
                last = f"/readyz answered {response.status_code}"
            except httpx.TransportError as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.25)
        if not answered:
            raise SimulationError(f"API not reachable at {self.config.api_url}: {last}")
        log.warning("API at %s is not ready (%s); sending anyway", self.config.api_url, last)

    # -- phases ----------------------------------------------------------------------------
    async def post_catalog(self) -> None:
        """Post the initial catalog in chunks of at most 1000 items."""
        catalog = self.model.make_catalog()
        for start in range(0, len(catalog), MAX_BATCH_ITEMS):
            chunk = catalog[start : start + MAX_BATCH_ITEMS]
            response = await self.request(
                "POST", "/v1/items", {"items": chunk}, self.config.admin_key
            )
            if response is None:
                raise SimulationError(self._fatal or "the API did not accept the catalog")
            self.report.catalog_items += len(chunk)
            self._stock.update((item["item_id"], item["in_stock"]) for item in chunk)

    async def pump(self) -> None:
        """Draw actions from the model, fill batches, pace them and send them."""
        config = self.config
        loop = asyncio.get_running_loop()
        budget = config.event_budget
        start = loop.time()
        deadline = None if config.max_events is not None else start + config.duration_s
        actions = self.model.traffic()
        batch: list[dict[str, Any]] = []
        seq = sent = 0
        while self._fatal is None:
            if budget is not None and sent >= budget:
                break
            if deadline is not None and loop.time() >= deadline:
                break
            limit = config.effective_batch_size
            if budget is not None:
                limit = min(limit, budget - sent)
            while len(batch) < limit:
                action = next(actions)
                if isinstance(action, Track):
                    self._note(action.event, seq)
                    batch.append(action.event)
                elif isinstance(action, Identify):
                    after = self._anon_batch.pop(action.anonymous_id, -1)
                    self._spawn(self._identify(action, after))
                elif config.catalog:
                    self._spawn(self._change_stock(action))
            if config.rate > 0:  # a batch leaves once its events are due, like an SDK buffer
                delay = start + (sent + len(batch)) / config.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._in_flight.acquire()
            self._spawn(self._send_batch(seq, self._stamped(batch)))
            sent += len(batch)
            seq += 1
            batch = []
        self.report.events_sent = sent
        self.report.batches = seq
        async with self._progress_cond:  # wake identify calls if we stopped early
            self._progress_cond.notify_all()

    def _stamped(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies with client timestamps spread evenly up to now, as the rate spaces them.

        Event time then follows generation order even when concurrent batches reach Kafka
        out of order; a retried batch keeps its timestamps (and ids).
        """
        spacing = 1.0 / self.config.rate if self.config.rate > 0 else 1e-6
        now = time.time()
        last = len(batch) - 1
        return [
            {**event, "timestamp": _iso(now - (last - index) * spacing)}
            for index, event in enumerate(batch)
        ]

    def _note(self, event: dict[str, Any], seq: int) -> None:
        """Count the event and remember which batch holds an anonymous visitor's events."""
        self._types[event["type"]] += 1
        if "user_id" in event:
            self._users.add(event["user_id"])
        else:
            self._anon_batch[event["anonymous_id"]] = seq
            if len(self._anon_batch) > 50_000:  # forget visitors whose batches are done
                low = self._low
                self._anon_batch = {k: v for k, v in self._anon_batch.items() if v >= low}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, seq: int, events: list[dict[str, Any]]) -> None:
        try:
            response = await self.request(
                "POST", "/v1/events", {"events": events}, self.config.tracking_key
            )
            if response is not None:
                try:
                    accepted = int(response.json().get("accepted", len(events)))
                except (ValueError, AttributeError):
                    accepted = len(events)
                self.report.events_accepted += accepted
            if self._bar is not None:
                self._bar.update(len(events))
        finally:
            self._in_flight.release()
            async with self._progress_cond:
                self._completed.add(seq)
                while self._low in self._completed:
                    self._completed.remove(self._low)
                    self._low += 1
                self._progress_cond.notify_all()

    async def _identify(self, action: Identify, after_batch: int) -> None:
        """Identify once every batch up to the visitor's last anonymous one completed.

        The API keys identify by the anonymous id, so it lands after those events on the
        same partition only if they were produced first. No client timestamp: server
        time is after those events' times by construction.
        """
        async with self._progress_cond:
            await self._progress_cond.wait_for(
                lambda: self._low > after_batch or self._fatal is not None
            )
        if self._fatal is not None:
            return
        body = {"anonymous_id": action.anonymous_id, "user_id": action.user_id}
        if await self.request("POST", "/v1/identify", body, self.config.tracking_key):
            self.report.identifies += 1
            self._users.add(action.user_id)

    async def _change_stock(self, action: StockChange) -> None:
        async with self._stock_lock:
            path = f"/v1/items/{quote(action.item_id, safe='')}"
            if await self.request("PUT", path, action.body, self.config.admin_key):
                self._stock[action.item_id] = bool(action.body["in_stock"])
                self.report.stock_changes += 1

    async def drain(self) -> None:
        """Wait for every batch, identify and stock change still in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run(self) -> SimulationReport:
        """Wait for the API, post the catalog, send the traffic, report."""
        config = self.config
        await self.wait_ready()
        if config.catalog:
            await self.post_catalog()
        self._bar = tqdm(
            total=config.event_budget,
            unit="ev",
            desc="simulate",
            disable=not config.progress,
            mininterval=0.5,
            file=sys.stderr,
        )
        started = time.perf_counter()
        try:
            await self.pump()
            await self.drain()
        finally:
            self._bar.close()
        if self._fatal is not None:
            raise SimulationError(self._fatal)
        return self._finish(time.perf_counter() - started)

    def _finish(self, elapsed: float) -> SimulationReport:
        report = self.report
        report.elapsed_s = round(elapsed, 3)
        report.achieved_rate = round(report.events_accepted / elapsed, 1) if elapsed > 0 else 0.0
        report.users = sorted(self._users, key=_id_order)
        report.out_of_stock_items = [
            item.item_id for item in self.model.items if self._stock.get(item.item_id) is False
        ]
        report.event_types = dict(self._types)
        report.status_counts = dict(self._statuses)
        return report


async def run_simulation(
    config: SimulationConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> SimulationReport:
    """Run the simulation against ``config.api_url`` and report what happened.

    Waits for the API, posts the catalog (unless ``config.catalog`` is false), then sends
    traffic until the event budget or the duration is used up and every request is
    answered. ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    Raises :class:`SimulationError` when the API is unreachable or refuses a key.
    """
    limits = httpx.Limits(
        max_connections=MAX_IN_FLIGHT + 2, max_keepalive_connections=MAX_IN_FLIGHT + 2
    )
    timeout = httpx.Timeout(10.0, pool=60.0)
    async with httpx.AsyncClient(
        base_url=config.api_url, limits=limits, timeout=timeout, transport=transport
    ) as client:
        return await _Runner(config, client).run()


# --- command line -------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streamrec simulate`` options to ``parser``."""
    defaults = SimulationConfig()
    parser.add_argument(
        "--api-url",
        default=None,
        help=f"base URL of the API (default: from STREAMREC_API_HOST/PORT, {defaults.api_url})",
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="events per second; 0 = unthrottled"
    )
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="seconds to run"
    )
    parser.add_argument(
        "--events", type=int, default=None, help="send this many events (replaces --duration)"
    )
    parser.add_argument("--users", type=int, default=defaults.users, help="known shoppers")
    parser.add_argument("--items", type=int, default=defaults.items, help="catalog size")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="events per request (≤500)"
    )
    parser.add_argument(
        "--anonymous-share",
        type=float,
        default=defaults.anonymous_share,
        help="share of sessions by anonymous visitors",
    )
    parser.add_argument(
        "--out-of-stock",
        type=float,
        default=defaults.out_of_stock,
        help="share of the catalog out of stock",
    )
    parser.add_argument(
        "--no-catalog", action="store_true", help="skip catalog and stock writes (admin)"
    )
    parser.add_argument(
        "--tracking-key", default=None, help="default: first of STREAMREC_TRACKING_KEYS"
    )
    parser.add_argument("--admin-key", default=None, help="default: first of STREAMREC_ADMIN_KEYS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _first_key(raw: str) -> str:
    return next((key.strip() for key in raw.split(",") if key.strip()), "")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Build the config from parsed options; what is not given comes from the settings.

    Keys default to the first of ``STREAMREC_TRACKING_KEYS`` / ``STREAMREC_ADMIN_KEYS``,
    the API URL to ``STREAMREC_API_HOST``/``STREAMREC_API_PORT`` (a wildcard bind
    address becomes 127.0.0.1).
    """
    from streamrec.settings import get_settings

    settings = get_settings()
    tracking_key = getattr(args, "tracking_key", None)
    admin_key = getattr(args, "admin_key", None)
    api_url = getattr(args, "api_url", None)
    if tracking_key is None:
        tracking_key = _first_key(settings.tracking_keys)
    if admin_key is None:
        admin_key = _first_key(settings.admin_keys)
    if api_url is None:
        host = settings.api_host if settings.api_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        api_url = f"http://{host}:{settings.api_port}"
    return SimulationConfig(
        api_url=api_url,
        rate=args.rate,
        duration_s=args.duration,
        max_events=args.events,
        users=args.users,
        items=args.items,
        out_of_stock=args.out_of_stock,
        anonymous_share=args.anonymous_share,
        batch_size=args.batch_size,
        seed=args.seed,
        tracking_key=tracking_key,
        admin_key=admin_key,
        catalog=not args.no_catalog,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    """``streamrec simulate``: 0 when every event was accepted, 1 when some were not,
    2 when the run could not go on (unreachable API, refused key, bad option)."""
    try:
        config = config_from_args(args)
        report = asyncio.run(run_simulation(config))
    except (SimulationError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1
