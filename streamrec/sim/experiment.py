"""``streamrec simulate --experiment ID``: shoppers whose purchases depend on what they
are shown, so an experiment has a true lift to find (or, with ``--ignore-lists``, none).

Each visitor is a new entity (a user, or an anonymous visitor who may log in before
buying) with a taste of 1–2 categories of the simulated catalog. A visit: a few views,
one home list (``GET /v1/users/{id}/recommendations``: the experiment assigns the
visitor there), an impression of what was shown (and sometimes a click), then maybe a
purchase. The purchase probability is::

    p = base_rate × (1 + (list_effect - 1) × relevance)

where ``relevance`` is the share of the shown items in the visitor's categories (0 for a
holdout's empty list). With ``ignore_lists`` it is ``base_rate`` and every choice is
independent of the list. All random draws of a visitor are made up front from a
generator seeded by ``(seed, visitor)``, so with ``ignore_lists`` a run is repeatable to
the cent whatever the lists were.

``srm_loss`` drops that share of the visitors the hash puts outside the control before
their list, the way a redirect that loses users breaks an experiment: the sample ratio
test must flag it. The run tallies what it sent per variant (:class:`ExperimentTruth`),
the counts the report must gain during the run. On an experiment that already has
entities, visitor ids also carry that number, so a second run sends new visitors (with
the same draws) and a run is repeatable from the same state.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from recommender.experiments import assign_variant, control_of
from streamrec.client import AsyncClient
from streamrec.sim.shop_model import ShopItem, ShopModel

#: Visits in flight at once.
CONCURRENCY = 16
#: Share of anonymous visitors who log in before checkout (the rest stay anonymous).
LOGIN_SHARE = 0.5
#: A visitor of a personalized variant looks at the home list up to this many times,
#: this far apart, until it is more than the bare popular list (see ``_home_list``).
LOOK_TRIES, LOOK_PAUSE_S = 10, 0.1


@dataclass
class ExperimentSimConfig:
    """The experiment-specific knobs of ``streamrec simulate --experiment``."""

    experiment_id: str
    visitors: int = 300
    base_rate: float = 0.1
    list_effect: float = 2.0
    ignore_lists: bool = False
    srm_loss: float = 0.0
    anonymous_share: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.base_rate <= 1 or not 0 <= self.srm_loss <= 1:
            raise ValueError("base_rate and srm_loss must be within 0..1")
        if self.list_effect <= 0:
            raise ValueError("list_effect must be positive")
        if self.base_rate * max(1.0, self.list_effect) > 1:
            raise ValueError("base_rate × list_effect must be at most 1")


@dataclass
class ExperimentTruth:
    """What the run sent, per variant: the figures the report must show."""

    counts: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    lost: int = 0
    visitors: int = 0

    def add(self, variant: str, metric: str, value: float = 1) -> None:
        """Count ``value`` for ``metric`` of ``variant``."""
        self.counts[variant][metric] += value

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (revenue rounded to cents)."""
        return {"visitors": self.visitors, "lost": self.lost,
                "variants": {v: {m: round(x, 6) for m, x in c.items()}
                             for v, c in sorted(self.counts.items())}}


@dataclass(frozen=True)
class Visitor:
    """One visitor's identity, taste and every random draw, made before the visit."""

    entity: str
    user_id: str | None  # set: an anonymous visitor who logs in before checkout
    taste: tuple[str, ...]
    views: tuple[ShopItem, ...]
    buy_draw: float
    click_draw: float
    pick_draw: float
    fallback_item: ShopItem
    quantity: int


def plan_visitor(model: ShopModel, seed: int, index: int, anonymous_share: float,
                 run: str = "") -> Visitor:
    """Visitor ``index`` of run ``seed`` (pure: same arguments, same visitor). ``run``
    only names the ids (``xu-{seed}-{run}-{index}``, without ``run-`` when empty):
    another run token gives new entities with the same draws."""
    rng = random.Random(f"{seed}:{index}")
    taste = tuple(rng.sample(model.categories, k=min(len(model.categories),
                                                     rng.choice((1, 2)))))
    weight = dict(zip((item.item_id for item in model.items), model.popularity, strict=True))
    mine = [item for item in model.items if item.category in taste and item.in_stock]
    mine = mine or [item for item in model.items if item.in_stock] or model.items
    odds = [weight[item.item_id] for item in mine]  # Zipf: visitors share favourites
    anonymous = rng.random() < anonymous_share
    logs_in = anonymous and rng.random() < LOGIN_SHARE
    name = f"{seed}-{run}-{index}" if run else f"{seed}-{index}"
    entity = f"xa-{name}" if anonymous else f"xu-{name}"
    return Visitor(entity=entity, user_id=f"xu-{name}" if logs_in else None,
                   taste=taste, views=tuple(rng.choices(mine, odds, k=rng.randint(2, 4))),
                   buy_draw=rng.random(), click_draw=rng.random(), pick_draw=rng.random(),
                   fallback_item=rng.choice(mine), quantity=1 if rng.random() < 0.8 else 2)


def relevance(shown: list[str], taste: tuple[str, ...], by_id: dict[str, ShopItem]) -> float:
    """Share of the shown items in the visitor's categories (0 when nothing is shown)."""
    if not shown:
        return 0.0
    return sum(i in by_id and by_id[i].category in taste for i in shown) / len(shown)


def home_problem(experiment_id: str, experiments: list[dict[str, Any]]) -> str | None:
    """Why ``experiment_id`` would not answer a home list (``None``: it does). The
    simulated visitors look at the home list only; the API serves a context by the first
    by id of the running experiments that cover it (docs/experiments.md), so a stopped
    experiment, one without ``home``, or one shadowed there would leave every visitor
    tallied under another experiment's variants (or none)."""
    docs = {str(doc["experiment_id"]): doc for doc in experiments}
    doc = docs.get(experiment_id)
    if doc is None:
        return f"no experiment {experiment_id!r}"
    if doc.get("status") != "running":
        return (f"experiment {experiment_id!r} is stopped: its answers carry no "
                "experiment; simulate a running one")
    contexts = doc.get("contexts")
    if contexts is not None and "home" not in contexts:
        return (f"experiment {experiment_id!r} covers {', '.join(contexts)}, not home: "
                "the simulated visitors look at the home list")
    serving = min(eid for eid, other in docs.items() if other.get("status") == "running"
                  and (other.get("contexts") is None or "home" in other["contexts"]))
    if serving != experiment_id:
        return (f"the home list is served by experiment {serving!r} (of the running "
                f"experiments covering home, the first by id), not {experiment_id!r}: "
                "stop it, or simulate that one")
    return None


class ExperimentRun:
    """Drives the visitors of one experiment simulation through the API."""

    def __init__(self, client: AsyncClient, model: ShopModel, config: ExperimentSimConfig,
                 seed: int) -> None:
        self.client = client
        #: Names this run's visitor ids: "" on the experiment's first run, else the
        #: number of entities earlier runs (or real traffic) enrolled (``run``).
        self.run_token = ""
        #: The report before the first visitor: what earlier runs left (``run``).
        self.baseline: dict[str, Any] | None = None
        self.model = model
        self.config = config
        self.seed = seed
        self.truth = ExperimentTruth()
        self.by_id = {item.item_id: item for item in model.items}
        self._design: tuple[list[str], list[float]] = ([], [])
        self._serve: dict[str, str] = {}

    async def design(self) -> None:
        """Read the experiment's variants (admin key) for ``srm_loss``; a ``ValueError``
        when the experiment would not answer the visitors' home lists (``home_problem``)."""
        path = f"/v1/admin/experiments/{quote(self.config.experiment_id, safe='')}"
        doc = (await self.client.request("GET", path, role="admin")).json()
        listed = await self.client.request("GET", "/v1/admin/experiments", role="admin")
        problem = home_problem(self.config.experiment_id, listed.json()["experiments"])
        if problem:
            raise ValueError(problem)
        self._design = ([v["name"] for v in doc["variants"]],
                        [float(v["weight"]) for v in doc["variants"]])
        self._serve = {str(v["name"]): str(v["serve"]) for v in doc["variants"]}

    def _lost(self, visitor: Visitor) -> bool:
        names, weights = self._design
        if self.config.srm_loss <= 0 or not names:
            return False
        variant = assign_variant(self.config.experiment_id, visitor.entity, names, weights)
        draw = random.Random(f"{self.seed}:{visitor.entity}:lost").random()
        return variant != control_of(names) and draw < self.config.srm_loss

    async def _home_list(self, entity: str) -> Any:
        """The home list the visitor looks at. A visitor in a personalized variant looks
        once the worker has seen their views (until their list is no longer the bare
        popular one, at most ``LOOK_TRIES`` answers ``LOOK_PAUSE_S`` apart): a shopper
        reaches the home page after browsing, not within the same millisecond."""
        await self.client.flush()
        answer = await self.client.recommendations(entity, n=10, context="home")
        for _ in range(LOOK_TRIES):
            tag = answer.experiment
            if answer.source != "popular" or tag is None or \
                    self._serve.get(tag.variant) != "personalized":
                break
            await asyncio.sleep(LOOK_PAUSE_S)
            answer = await self.client.recommendations(entity, n=10, context="home")
        return answer

    async def visit(self, index: int) -> None:
        """One visitor's views, list, impression, click and maybe purchase."""
        cfg = self.config
        v = plan_visitor(self.model, self.seed, index, cfg.anonymous_share, self.run_token)
        self.truth.visitors += 1
        if self._lost(v):
            self.truth.lost += 1
            return
        who = {"user_id": v.entity} if v.entity.startswith("xu-") else {"anonymous_id": v.entity}
        for item in v.views:
            await self.client.track_event({"type": "view", **who, "item_id": item.item_id})
        answer = await self._home_list(v.entity)
        tag = answer.experiment  # another experiment's tag (defined meanwhile): none of ours
        variant = tag.variant if tag and tag.id == cfg.experiment_id else "(none)"
        self.truth.add(variant, "entities")
        shown = [item.item_id for item in answer.items]
        rid = answer.recommendation_id
        if shown:
            await self.client.track_event({"type": "impression", **who, "item_ids": shown,
                                           "recommendation_id": rid})
            self.truth.add(variant, "impression")
            if v.click_draw < 0.3:
                await self.client.track_event({"type": "click", **who, "item_id": shown[0],
                                               "recommendation_id": rid})
                self.truth.add(variant, "click")
        p = cfg.base_rate
        if not cfg.ignore_lists:
            p *= 1 + (cfg.list_effect - 1) * relevance(shown, v.taste, self.by_id)
        if v.buy_draw >= p:
            return
        item, from_list = v.fallback_item, None
        liked = [i for i in shown if self.by_id.get(i) and self.by_id[i].category in v.taste]
        if liked and not cfg.ignore_lists:
            item, from_list = self.by_id[liked[int(v.pick_draw * len(liked))]], rid
        if v.user_id is not None:
            await self.client.identify(v.entity, v.user_id)
            who = {"user_id": v.user_id}
        extra = {"recommendation_id": from_list} if from_list else {}
        for etype in ("add_to_cart", "purchase"):
            await self.client.track_event({"type": etype, **who, "item_id": item.item_id,
                                           "price": item.price, "quantity": v.quantity,
                                           **extra})
        self.truth.add(variant, "add_to_cart")
        self.truth.add(variant, "purchase")
        self.truth.add(variant, "purchasers")
        self.truth.add(variant, "revenue", round(item.price * v.quantity, 6))

    async def report(self) -> dict[str, Any]:
        """The API's report of the experiment now."""
        path = f"/v1/admin/experiments/{quote(self.config.experiment_id, safe='')}/report"
        report: dict[str, Any] = (await self.client.request("GET", path, role="admin")).json()
        return report

    async def caught_up(self, timeout_s: float) -> dict[str, Any]:
        """The report once its counts equal what was sent (or after ``timeout_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            report = await self.report()
            if matches(report, self.truth, self.baseline) or loop.time() >= deadline:
                return report
            await asyncio.sleep(0.5)

    async def run(self) -> ExperimentTruth:
        """Every visitor, :data:`CONCURRENCY` at a time; then every event delivered."""
        await self.design()
        self.baseline = await self.report()
        enrolled = sum(int(v.get("entities") or 0) for v in self.baseline["variants"])
        self.run_token = f"r{enrolled}" if enrolled else ""
        queue = iter(range(self.config.visitors))

        async def worker() -> None:
            for index in queue:
                await self.visit(index)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        await self.client.flush()
        return self.truth


#: Report fields and the truth's metric names.
FIELDS = {"entities": "entities", "impressions": "impression", "clicks": "click",
          "add_to_cart": "add_to_cart", "purchases": "purchase", "purchasers": "purchasers"}


def differences(report: dict[str, Any], truth: ExperimentTruth,
                baseline: dict[str, Any] | None = None) -> list[str]:
    """Where the report's per-variant counts differ from what was sent (empty: exact);
    with ``baseline`` (the report before the run), what the report gained since."""
    problems = []
    rows = {row["name"]: row for row in report["variants"]}
    before = {row["name"]: row for row in (baseline or {"variants": []})["variants"]}
    for name in sorted(set(rows) | set(truth.counts)):
        row, sent, old = rows.get(name, {}), truth.counts.get(name, {}), before.get(name, {})
        for field_name, metric in FIELDS.items():
            gained = int(row.get(field_name, 0)) - int(old.get(field_name, 0))
            if gained != int(sent.get(metric, 0)):
                problems.append(f"{name}.{field_name}: report {gained}, "
                                f"sent {int(sent.get(metric, 0))}")
        gained_revenue = float(row.get("revenue", 0)) - float(old.get("revenue", 0))
        if abs(gained_revenue - sent.get("revenue", 0.0)) > 1e-6:
            problems.append(f"{name}.revenue: report {round(gained_revenue, 6)}, "
                            f"sent {sent.get('revenue', 0.0):.6f}")
    return problems


def matches(report: dict[str, Any], truth: ExperimentTruth,
            baseline: dict[str, Any] | None = None) -> bool:
    """True when the report shows exactly what was sent (since ``baseline``)."""
    return not differences(report, truth, baseline)


async def run_experiment_simulation(base: Any, config: ExperimentSimConfig, *,
                                    wait_s: float = 60.0) -> dict[str, Any]:
    """Post the catalog (unless ``base.catalog`` is false), drive the visitors, then wait
    up to ``wait_s`` for the report to gain what was sent (over ``baseline``, the report
    before the first visitor). ``base`` is the ``SimulationConfig`` (URL, keys, seed,
    items, retry rule). Returns ``{"truth", "report", "baseline", "differences"}``."""
    model = ShopModel(items=base.items, users=max(1, config.visitors),
                      out_of_stock=base.out_of_stock, seed=base.seed)
    async with AsyncClient(base.api_url, base.tracking_key or None,
                           admin_key=base.admin_key or None, retry=base.retry,
                           batch_size=base.effective_batch_size, max_in_flight=4) as client:
        if base.catalog:
            await client.upsert_items(model.make_catalog())
        run = ExperimentRun(client, model, config, base.seed)
        truth = await run.run()
        report = await run.caught_up(wait_s)
    return {"truth": truth.to_dict(), "report": report, "baseline": run.baseline,
            "differences": differences(report, truth, run.baseline)}
