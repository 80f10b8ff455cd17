"""A list answered again because the experiments changed mid-request counts once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from core.settings import Settings
from tests.integration.api.test_experiments import SPEC, A, R, entity_in, keyed, personal, r

pytestmark = pytest.mark.integration

__all__ = ["keyed", "r"]  # the fixtures, used by name


def served(text: str) -> float:
    """The sum of ``streamrec_api_lists_served_total`` in a ``/metrics`` scrape."""
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "streamrec_api_lists_served_total")


async def test_a_definitions_change_mid_request_counts_one_list(keyed: Settings,
                                                               r: Any) -> None:
    """Another process stops the experiment while a request is being answered: the
    request answers again by the new definitions, and only that answer is a served
    list. Both were counted in ``streamrec_api_lists_served_total`` (and so in the
    dashboard's lists served), once per answer."""
    app, other = create_app(keyed), create_app(keyed)  # two API processes
    async with app.router.lifespan_context(app), other.router.lifespan_context(other):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://api") as c, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=other),
                                  base_url="http://api") as c2:
            for _ in range(150):
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await c.put("/v1/admin/experiments/recs", json=SPEC,
                                headers=A)).status_code in (200, 201)
            user = entity_in("treatment")
            personal(r, user)
            experiments = app.state.services.reader.experiments
            answer = experiments._answer
            stopped: list[int] = []

            async def answer_then_stop(query: Any, serve: Any) -> Any:
                async def stop_then_serve(q: Any) -> Any:
                    if not stopped:  # the change lands after the copy was read
                        stopped.append(1)
                        # in a task of its own, as in another process: its own context
                        resp = await asyncio.create_task(c2.put(
                            "/v1/admin/experiments/recs",
                            json={**SPEC, "status": "stopped"}, headers=A))
                        assert resp.status_code == 200, resp.text
                    return await serve(q)
                return await answer(query, stop_then_serve)

            experiments._answer = answer_then_stop
            before = served((await c.get("/metrics")).text)
            body = (await c.get(f"/v1/users/{user}/recommendations", headers=R)).json()
            assert stopped and "experiment" not in body  # answered by the new definitions
            assert served((await c.get("/metrics")).text) - before == 1
