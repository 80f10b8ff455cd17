"""The pure, seeded shop behind ``streamrec simulate``: catalog, shoppers and sessions.

A catalog with readable names, log-normal prices, ~20 categories and a share out of stock;
shoppers with 1–3 preferred categories and Zipf item popularity; interleaved shopping
sessions produced as :data:`Action` values (tracking events, identify calls of anonymous
visitors who log in, stock changes). No I/O, so it is tested without any server.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
    Event ids are those draws XOR ``id_salt``: another salt gives the same shop and traffic
    under other ids, so a second run against one stack is new events, not a redelivery
    of the first run's ids (which the worker would ignore).
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
        id_salt: int = 0,
    ) -> None:
        if items < 1 or users < 1:
            raise ValueError("items and users must be at least 1")
        if not 1 <= categories <= len(CATEGORY_NOUNS):
            raise ValueError(f"categories must be within 1..{len(CATEGORY_NOUNS)}")
        for name, share in (("out_of_stock", out_of_stock), ("anonymous_share", anonymous_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {share}")
        self._rng = random.Random(seed)
        self._id_salt = id_salt & ((1 << 128) - 1)
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
        return str(uuid.UUID(int=self._rng.getrandbits(128) ^ self._id_salt, version=4))

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
