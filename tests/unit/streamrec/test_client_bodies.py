"""Request bodies of the Python client stay within what the API takes (its
``STREAMREC_MAX_BODY_BYTES``): a fake API that answers a larger body with 413, as the real
one does (the real one is in tests/integration/streamrec/test_client.py)."""

from __future__ import annotations

import orjson

from core.limits import MAX_BODY_BYTES
from core.settings import Settings
from tests.unit.streamrec.test_client import FakeApi, client_for, error


def capped_api(cap: int) -> FakeApi:
    """A fake API that, like the real one, answers a body over ``cap`` bytes with 413."""
    return FakeApi(lambda r, n: error(413, "payload_too_large") if len(r.content) > cap
                   else None)


async def test_bodies_stay_within_the_apis_body_cap() -> None:
    # 1500 items of ~1.2 KB went as 1000 + 500: the first body was 1.3 MB, over the API's
    # 1 MiB, which answers 413 at once and cuts the connection while the client is still
    # sending; upsert_items raised PayloadTooLarge (or ConnectionFailed) and wrote nothing.
    assert Settings.model_fields["max_body_bytes"].default == MAX_BODY_BYTES
    api = capped_api(MAX_BODY_BYTES)
    items = [{"item_id": f"big-{k}", "name": f"item {k}", "properties": {"text": "d" * 1200}}
             for k in range(1500)]
    async with client_for(api, batch_size=500, flush_interval_s=60) as sr:
        assert (await sr.upsert_items(items)).accepted == 1500
        ids = [await sr.track("impression", anonymous_id=f"a{k}", recommendation_id="r",
                              item_ids=[f"item-{k}-{j:012d}" for j in range(100)])
               for k in range(500)]
        await sr.flush()
    assert sorted(api.accepted) == sorted(ids)
    assert all(len(r.content) <= MAX_BODY_BYTES for r in api.requests)
    sent = [len(orjson.loads(b)["items"]) for b in api.bodies("/v1/items")]
    assert sum(sent) == 1500 and len(sent) == 2


async def test_a_lower_body_cap_halves_item_writes() -> None:
    # a deployment with STREAMREC_MAX_BODY_BYTES below the client's max_body_bytes
    api = capped_api(100_000)
    items = [{"item_id": f"i{k}", "properties": {"text": "d" * 1000}} for k in range(300)]
    async with client_for(api) as sr:
        assert (await sr.upsert_items(items)).accepted == 300
    written = [i["item_id"] for b in api.bodies("/v1/items") if len(b) <= 100_000
               for i in orjson.loads(b)["items"]]
    assert written == [f"i{k}" for k in range(300)]
