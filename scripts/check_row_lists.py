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

sys.path.insert(0, ".")
from recommender.history import History  # noqa: E402
from schemas import TopicEvent  # noqa: E402
from scripts.bench_processor import stack_processor, taobao_rows  # noqa: E402
from stream.history_store import DictStore  # noqa: E402
from stream.processor import RECENT_ITEMS  # noqa: E402


def _without_ts(body: bytes) -> dict[str, object]:
    doc = orjson.loads(body)
    doc.pop("ts", None)
    return doc


async def main() -> None:
    """Compare the two read paths over every entity the events touch."""
    n = int(os.environ.get("N", "4000"))
    _, writer, proc = await stack_processor()
    model = proc.model()
    assert model is not None
    now = time.time()
    tag = uuid.uuid4().hex[:6]
    events = [(TopicEvent(event_id=f"{tag}-{i}", type=t, user_id=u, item_id=it, ts=now,
                          received_at=now), 0) for i, (u, it, t) in enumerate(taobao_rows(0, n))]
    store = DictStore()
    await proc.process(events, store)
    refreshed = {e: History.from_dict(v) for e, v in store.data.items()}
    entities = list(refreshed)
    recent = {e: refreshed[e].recent_items(RECENT_ITEMS) for e in entities}
    binary = await proc.relister._entity_lists(model, entities, refreshed, recent)
    as_json = writer.blend_inputs

    async def json_only(*args: object, **kwargs: object) -> object:
        kwargs.pop("version", None)
        return await as_json(*args, **kwargs)  # type: ignore[arg-type]

    setattr(writer, "blend_inputs", json_only)  # noqa: B010 (patch the instance only)
    reference = await proc.relister._entity_lists(model, entities, refreshed, recent)
    same = [a[0] == b[0] and _without_ts(a[1]) == _without_ts(b[1])
            for a, b in zip(binary, reference, strict=True)]
    print(json.dumps({"entities": len(entities), "lists": len(binary),
                      "identical": sum(same), "different": len(same) - sum(same)}))
    await writer.r.aclose()
    raise SystemExit(0 if all(same) and len(binary) == len(reference) else 1)


if __name__ == "__main__":
    asyncio.run(main())
