"""Catalog and stock writes (admin key): upsert, bulk upsert, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.auth import Role
from api.body import json_body_openapi, parse_model, read_json
from api.deps import IngestorDep, require
from api.routes.common import WrittenItemIdPath, error_responses
from schemas import Accepted, ItemBatch, ItemUpdate

router = APIRouter(
    tags=["catalog"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
)


@router.put(
    "/v1/items/{item_id:id}",
    status_code=202,
    response_model=Accepted,
    openapi_extra=json_body_openapi(
        "ItemUpdate",
        example={"name": "Espresso beans 1kg", "price": 24.9, "currency": "EUR",
                 "category": "coffee", "in_stock": True, "properties": {"roast": "dark"}},
    ),
)
async def put_item(item_id: WrittenItemIdPath, request: Request, ingestor: IngestorDep) -> Accepted:
    """Set an item's full state (name, price, stock, ...): a field left out is cleared."""
    return await ingestor.upsert_item(item_id, parse_model(ItemUpdate, await read_json(request)))


@router.post(
    "/v1/items",
    status_code=202,
    response_model=Accepted,
    openapi_extra=json_body_openapi(
        "ItemBatch",
        example={"items": [{"item_id": "sku-1", "name": "Espresso beans 1kg", "price": 24.9,
                            "in_stock": True}]},
    ),
)
async def post_items(request: Request, ingestor: IngestorDep) -> Accepted:
    """Upsert many items at once (`{"items": [...]}`); of two entries of one id, the later
    wins."""
    batch = parse_model(ItemBatch, await read_json(request))
    return await ingestor.upsert_items(batch.items)


@router.delete("/v1/items/{item_id:id}", status_code=202, response_model=Accepted)
async def delete_item(item_id: WrittenItemIdPath, ingestor: IngestorDep) -> Accepted:
    """Delete an item: it is never recommended again until a write lists it anew (its
    counts are kept)."""
    return await ingestor.delete_item(item_id)
