"""Operator endpoints (admin key): exact per-item counts fed by the stream.

The counts come from ``i:{item}:stats`` (one ``HINCRBY`` per event type) and
``i:{item}:users`` (a set of entities, exact up to ``distinct_exact_max``; beyond it the
HyperLogLog ``i:{item}:users_hll`` estimates, within about 1 %), both written by the
worker's once-per-event-id Lua script, so they are exact through redelivery, worker
crashes and replays. They are what the chaos tests compare against the events they sent.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from redis.exceptions import RedisError

from api.auth import Role
from api.deps import ServicesDep, require
from api.errors import RedisUnavailable
from api.routes.common import ItemIdPath, error_responses
from core.redis_keys import RedisKeys
from schemas.admin import ItemStats

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)

_KEYS = RedisKeys()
#: Redis hash field (the event type) → response field.
_FIELDS = {
    "view": "views",
    "click": "clicks",
    "add_to_cart": "cart_adds",
    "remove_from_cart": "cart_removes",
    "purchase": "purchases",
    "impression": "impressions",
}


@router.get("/v1/admin/items/{item_id:id}/stats", response_model=ItemStats)
async def item_stats(item_id: ItemIdPath, services: ServicesDep) -> ItemStats:
    """Exact interaction counts and distinct users of one item (zeros if never seen)."""
    pipe = services.redis.pipeline(transaction=False)
    pipe.hgetall(_KEYS.item_stats(item_id))
    pipe.scard(_KEYS.item_users(item_id))
    # as a plain command: redis-py's cluster pipeline refuses its pfcount() method
    pipe.execute_command("PFCOUNT", _KEYS.item_users_hll(item_id))
    try:
        counts, users, estimate = await pipe.execute()
    except (RedisError, OSError) as exc:
        # Exact counts have no meaningful fallback: say so, and when to retry.
        raise RedisUnavailable(exc) from exc
    values = {name: int(counts.get(field) or 0) for field, name in _FIELDS.items()}
    distinct = int(users or 0)
    if distinct >= services.settings.distinct_exact_max:  # the exact set is full
        distinct = max(distinct, int(estimate or 0))
    return ItemStats(item_id=item_id, distinct_users=distinct, **values)
