"""The worker's lists with model-neighbour lists read as binary rows equal those with the
JSON lists (``stream.row_lists``), on the running stack's live model and Redis.

Feeds ``N`` Taobao events (4000) through ``EventProcessor`` into a dict store, then
computes the stored list of every entity twice — neighbour lists from the model
version's binary hash, and from the JSON keys — and compares ids, scores and reasons
(the ``ts`` field aside). Prints JSON; exits 1 on any difference. Run after ``streamrec
up``, ``load``, ``train``: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python
scripts/check_row_lists.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import orjson
import redis.asyncio as aioredis

sys.path.insert(0, ".")
from recommender.history import History  # noqa: E402
from schemas import TopicEvent  # noqa: E402
from scripts.bench_processor import taobao_rows  # noqa: E402
from stream.live_model import current_version, load_model  # noqa: E402
from stream.processor import RECENT_ITEMS, EventProcessor, ProcessorConfig  # noqa: E402
from stream.redis_writer import RedisWriter  # noqa: E402
from streamrec.redis_keys import RedisKeys  # noqa: E402
from streamrec.settings import Settings  # noqa: E402
from tests.history_store import DictStore  # noqa: E402


def _without_ts(body: bytes) -> dict[str, object]:
    doc = orjson.loads(body)
    doc.pop("ts", None)
    return doc


async def main() -> None:
    """Compare the two read paths over every entity the events touch."""
    n = int(os.environ.get("N", "4000"))
    with open(os.environ.get("STACK", ".streamrec/stack.json")) as fh:
        stack = json.load(fh)
    settings = Settings(redis_url=stack["redis_url"])
    client = aioredis.Redis.from_url(stack["redis_url"])
    keys = RedisKeys()
    version = await current_version(client, keys)
    if version is None:
        raise SystemExit("no live model: run `streamrec train` first")
    model = await load_model(client, keys, version, regularization=settings.als_regularization,
                             alpha=settings.als_alpha,
                             candidate_limit=settings.foldin_candidates)
    if model is None:
        raise SystemExit(f"model {version} could not be loaded")
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600)
    proc = EventProcessor(writer, keys, ProcessorConfig(list_size=settings.list_size,
                                                        blend_depth=settings.blend_depth),
                          lambda: model)
    now = time.time()
    tag = uuid.uuid4().hex[:6]
    events = [(TopicEvent(event_id=f"{tag}-{i}", type=t, user_id=u, item_id=it, ts=now,
                          received_at=now), 0) for i, (u, it, t) in enumerate(taobao_rows(0, n))]
    store = DictStore()
    await proc.process(events, store)
    refreshed = {e: History.from_dict(v) for e, v in store.data.items()}
    entities = list(refreshed)
    recent = {e: refreshed[e].recent_items(RECENT_ITEMS) for e in entities}
    binary = await proc._entity_lists(model, entities, refreshed, recent)
    as_json = writer.blend_inputs

    async def json_only(*args: object, **kwargs: object) -> object:
        kwargs.pop("version", None)
        return await as_json(*args, **kwargs)  # type: ignore[arg-type]

    setattr(writer, "blend_inputs", json_only)  # noqa: B010 (patch the instance only)
    reference = await proc._entity_lists(model, entities, refreshed, recent)
    same = [a[0] == b[0] and _without_ts(a[1]) == _without_ts(b[1])
            for a, b in zip(binary, reference, strict=True)]
    print(json.dumps({"entities": len(entities), "lists": len(binary),
                      "identical": sum(same), "different": len(same) - sum(same)}))
    await client.aclose()
    raise SystemExit(0 if all(same) and len(binary) == len(reference) else 1)


if __name__ == "__main__":
    asyncio.run(main())
