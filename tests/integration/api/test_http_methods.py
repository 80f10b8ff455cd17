"""HTTP method semantics an outside HTTP checker tries on every path, against a real API
process: ``HEAD`` wherever ``GET`` works (RFC 9110 9.3.2: the ``GET``'s status and
headers, no body), on the fast path and on the routes, and a 405 whose ``Allow`` names
every method its path takes. Before, ``HEAD`` answered 405 on every ``GET`` path but
/healthz and /readyz, and ``PATCH /v1/items/a`` said ``Allow: PUT`` though ``DELETE``
works there too (Starlette named the first route of the path only)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tests.integration.conftest import api_process

pytestmark = [pytest.mark.integration, pytest.mark.broker]

#: Headers whose value may differ between two answers to the same request.
VARYING = {"date", "content-length"}
#: Paths whose body, and so Content-Length, is the same on every request.
STABLE = {"/", "/healthz", "/v1/admin/items/x", "/sdk/streamrec.js", "/v1/admin/promotions/x",
          "/v1/admin/experiments/x", "/v1/admin/experiments/x/report", "/v1/admin/users/x"}


def _concrete(template: str) -> str:
    """An OpenAPI path template with every ``{param}`` filled in."""
    return template.replace("{version}", "0").replace("{", "").replace("}", "") \
        .replace("item_id", "x").replace("user_id", "x").replace("promotion_id", "x") \
        .replace("experiment_id", "x")


def _allow(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize("fast", [True, False])
def test_head_answers_every_get_and_405_names_every_method(topics: Settings, tmp_path: Path,
                                                          fast: bool) -> None:
    with api_process(topics, tmp_path, api_fast_path=fast) as (client, _):
        paths = client.get("/openapi.json").json()["paths"]
        assert len(paths) > 20
        for template, operations in paths.items():
            path = _concrete(template)
            documented = {m.upper() for m in operations}
            if "GET" in documented:
                get, head = client.get(path), client.head(path)
                assert head.status_code == get.status_code, (path, get.text)
                assert head.content == b"", path
                assert ({k: v for k, v in head.headers.items() if k not in VARYING}
                        == {k: v for k, v in get.headers.items() if k not in VARYING}), path
                if path in STABLE:
                    assert head.headers["content-length"] == get.headers["content-length"]
            # No path takes PATCH: its 405 lists what the path takes, each of which works.
            refused = client.patch(path)
            assert refused.status_code == 405, path
            allow = _allow(refused)
            assert documented <= allow, (path, allow)
            assert ("HEAD" in allow) == ("GET" in allow), (path, allow)
            for method in allow - {"GET", "HEAD"}:
                assert client.request(method, path).status_code != 405, (method, path)
            assert refused.json()["error"]["message"].endswith(
                refused.headers["allow"]), path
        # HEAD of a path without GET: a 405 (no body) naming what the path takes
        refused = client.head("/v1/events")
        assert refused.status_code == 405 and refused.content == b""
        assert _allow(refused) == {"POST"}
        assert _allow(client.patch("/v1/items/a")) == {"PUT", "DELETE"}
        # HEAD of a fast-path GET the routes answer (a 422) and of an unknown path (404)
        assert client.head("/v1/popular?n=0").status_code == 422
        assert client.head("/nope").status_code == 404
        metrics = client.get("/metrics").text
        assert 'method="HEAD",route="/v1/popular",status="200"' in metrics
