"""Operator lookups (admin key): one item's catalog entry and stock, and what streamrec
holds for one user or anonymous id. The dashboard's lookup panel shows them beside the
item's exact counts (``/v1/admin/items/{id}/stats``), its similar items and the user's
current list (the public read endpoints)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from redis.exceptions import RedisError

from api.auth import Role
from api.deps import ServicesDep, require
from api.errors import RedisUnavailable
from api.filters import make_merch
from api.list_query import ListQuery
from api.ranking import user_chain
from api.routes.common import ItemIdPath, UserIdPath, error_responses
from core.limits import DEFAULT_N, MAX_CONTEXT_LEN, MAX_ID_LEN, MAX_N, MIN_N
from core.redis_keys import RedisKeys
from schemas import RecommendationList
from schemas.admin import CatalogEntry, EntityOverview, ItemRef

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)

_KEYS = RedisKeys()
#: Items of a set or list shown at most (a cart or purchase history can be long).
SHOWN = 20
_REF_FIELDS = ("name", "in_stock", "deleted")


async def _run(pipe: Any) -> list[Any]:
    try:
        async with asyncio.timeout(2.0):
            result: list[Any] = await pipe.execute()
            return result
    except (RedisError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(exc) from exc


def _properties(value: Any) -> dict[str, Any] | None:
    """The stored ``properties`` JSON of an item hash (None when absent or unreadable)."""
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@router.get("/v1/admin/items/{item_id:id}", response_model=CatalogEntry)
async def catalog_entry(item_id: ItemIdPath, services: ServicesDep) -> CatalogEntry:
    """The item's catalog fields, properties and stock as served now (`known: false` if
    never sent)."""
    pipe = services.redis.pipeline(transaction=False)
    pipe.hgetall(_KEYS.item_meta(item_id))
    pipe.sismember(_KEYS.deleted, item_id)
    meta, deleted = await _run(pipe)
    if not meta:
        return CatalogEntry(item_id=item_id, known=False, deleted=bool(deleted))
    return CatalogEntry(
        item_id=item_id, known=True, name=meta.get("name"), category=meta.get("category"),
        price=_float(meta.get("price")), currency=meta.get("currency"),
        in_stock=meta.get("in_stock") != "0", properties=_properties(meta.get("properties")),
        deleted=bool(deleted) or meta.get("deleted") == "1",
        updated_at=_float(meta.get("updated_at")))


@router.get("/v1/admin/users/{user_id:id}", response_model=EntityOverview)
async def entity_overview(user_id: UserIdPath, services: ServicesDep) -> EntityOverview:
    """A user's or anonymous id's recent items, cart, purchases and stored personal list."""
    pipe = services.redis.pipeline(transaction=False)
    pipe.get(_KEYS.user_recent(user_id))
    # Carts and purchases are sorted sets by time (stream/bounds.py): newest first.
    pipe.zrevrange(_KEYS.user_cart(user_id), 0, SHOWN - 1)
    pipe.zcard(_KEYS.user_bought(user_id))
    pipe.zrevrange(_KEYS.user_bought(user_id), 0, SHOWN - 1)
    pipe.get(_KEYS.user_recs(user_id))
    recent_raw, cart, purchased, bought, recs_raw = await _run(pipe)
    recent = [str(i) for i in _json_list(recent_raw)][:SHOWN]
    cart_ids, bought_ids = list(cart or ()), list(bought or ())
    ids = list(dict.fromkeys(recent + cart_ids + bought_ids))
    refs: dict[str, ItemRef] = {}
    if ids:
        pipe = services.redis.pipeline(transaction=False)
        for item_id in ids:
            pipe.hmget(_KEYS.item_meta(item_id), _REF_FIELDS)
        for item_id, (name, in_stock, deleted) in zip(ids, await _run(pipe), strict=True):
            known = name is not None or in_stock is not None
            refs[item_id] = ItemRef(item_id=item_id, name=name,
                                    in_stock=(in_stock != "0" and deleted != "1")
                                    if known else None)
    recs = _json_object(recs_raw)
    items = recs.get("items")
    return EntityOverview(
        user_id=user_id, recent=[refs[i] for i in recent], cart=[refs[i] for i in cart_ids],
        purchased=int(purchased or 0), purchased_items=[refs[i] for i in bought_ids],
        personal_list_size=len(items) if isinstance(items, list) else 0,
        personal_list_version=str(recs["v"]) if recs.get("v") is not None else None,
        personal_list_updated_at=_float(recs.get("ts")) if recs else None)


@router.get("/v1/admin/preview", response_model=RecommendationList)
async def preview(
    services: ServicesDep,
    user_id: Annotated[str, Query(min_length=1, max_length=MAX_ID_LEN,
                                  description="the user or anonymous id")],
    n: Annotated[int, Query(ge=MIN_N, le=MAX_N)] = DEFAULT_N,
    context: Annotated[str | None, Query(max_length=MAX_CONTEXT_LEN)] = None,
) -> Response:
    """The list `GET /v1/users/{user_id}/recommendations?explain=true` serves outside
    experiments, without that request's effects: no experiment enrolment or exposure
    (an operator looking a shopper up must not join them to one), no rate limit. An
    entity already enrolled in the context's experiment gets its `experiment` tag (its
    variant may serve it another list). The dashboard's user lookup shows it."""
    effective, chain = user_chain(context, None)
    body = await services.reader.serve_list(ListQuery(
        chain, n, entity=user_id, context=effective, merch=make_merch(explain=True)),
        count=False)
    try:
        async with asyncio.timeout(2.0):
            tag = await services.experiments.peek(user_id, effective)
    except (RedisError, OSError, TimeoutError):
        tag = None
    if tag is not None:
        body["experiment"] = tag
    return Response(orjson.dumps(body), media_type="application/json")


def _json_list(raw: Any) -> list[Any]:
    try:
        value = orjson.loads(raw) if raw else []
    except orjson.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _json_object(raw: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
