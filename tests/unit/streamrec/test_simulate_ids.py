"""The simulator's event ids across runs: ``make demo`` run twice, or the ``streamrec
simulate`` it suggests afterwards (same default seed), must send new events. With the
seed's own ids the second run was a redelivery of the first: "9000 accepted", and the
worker ignored every one of them (histories, models) or, an event-time hour later,
counted them in the item statistics a second time."""

from __future__ import annotations

import json

import httpx

from streamrec.sim.simulate import (
    Action,
    ShopModel,
    SimulationConfig,
    Track,
    run_simulation,
)


def actions(model: ShopModel, n: int) -> list[Action]:
    """The model's first ``n`` actions."""
    out: list[Action] = []
    for action in model.traffic():
        out.append(action)
        if len(out) >= n:
            break
    return out


def event_ids(seq: list[Action]) -> set[str]:
    """The event ids of the ``Track`` actions."""
    return {a.event["event_id"] for a in seq if isinstance(a, Track)}


def test_another_id_salt_is_the_same_traffic_under_new_event_ids() -> None:
    def without_ids(seq: list[Action]) -> list[object]:
        return [{k: v for k, v in a.event.items() if k != "event_id"}
                if isinstance(a, Track) else a for a in seq]

    plain = actions(ShopModel(seed=5), 2000)
    salted = actions(ShopModel(seed=5, id_salt=12345), 2000)
    assert without_ids(plain) == without_ids(salted)
    assert not event_ids(plain) & event_ids(salted)
    assert event_ids(actions(ShopModel(seed=5, id_salt=0), 2000)) == event_ids(plain)


async def sent_ids(**overrides: object) -> list[str]:
    """The event ids one simulation run posts (to an in-process stand-in of the API)."""
    ids: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"status": "ready", "checks": {}})
        body = json.loads(request.content)
        if request.url.path == "/v1/events":
            ids.extend(event["event_id"] for event in body["events"])
            return httpx.Response(202, json={"accepted": len(body["events"]),
                                             "event_ids": [e["event_id"] for e in body["events"]]})
        return httpx.Response(202, json={"accepted": 1, "ids": []})

    config = SimulationConfig(rate=0.0, max_events=500, progress=False, **overrides)  # type: ignore[arg-type]
    report = await run_simulation(config, transport=httpx.MockTransport(api))
    assert report.events_accepted == 500
    return ids


async def test_a_second_run_with_the_same_seed_sends_new_event_ids() -> None:
    first, second = await sent_ids(), await sent_ids()
    assert len(set(first)) == len(set(second)) == 500
    assert not set(first) & set(second)


async def test_a_pinned_id_salt_repeats_the_ids() -> None:
    assert await sent_ids(id_salt=9) == await sent_ids(id_salt=9)
