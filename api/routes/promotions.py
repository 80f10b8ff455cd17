"""Promotions (admin key): items or a category that lead recommendation lists at a share
of their slots, in chosen page contexts and a time window (:mod:`api.promotions`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from redis.exceptions import RedisError

from api.auth import Role
from api.body import json_body_openapi, parse_model, read_json
from api.deps import ServicesDep, require
from api.errors import ApiError, RedisUnavailable, ValidationFailed
from api.promotions import Promotions, TooManyPromotions
from api.routes.common import WrittenIdPath, error_responses
from schemas import ErrorBody
from schemas.merch import Promotion, PromotionBody, PromotionList

router = APIRouter(
    tags=["merchandising"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)

#: ``responses=`` entry of the routes that name one promotion.
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {
    "model": ErrorBody, "description": "No promotion has this id",
    "content": {"application/json": {"example": {"error": {
        "code": "not_found", "message": "no promotion 'xmas-coffee'"}}}}}}


class PromotionNotFound(ApiError):
    """No promotion has this id."""

    status_code = 404
    code = "not_found"


def _store(services: ServicesDep) -> Promotions:
    return services.reader.promotions


def _unavailable(exc: Exception) -> RedisUnavailable:
    return RedisUnavailable(exc)


@router.put(
    "/v1/admin/promotions/{promotion_id:id}",
    response_model=Promotion,
    responses=error_responses(413, 415),
    openapi_extra=json_body_openapi(
        "PromotionBody",
        example={"item_ids": ["sku-1", "sku-2"], "share": 0.2, "contexts": ["home"],
                 "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-24T00:00:00Z"}),
)
async def put_promotion(promotion_id: WrittenIdPath, request: Request,
                        services: ServicesDep) -> Promotion:
    """Create or replace a promotion; it leads matching lists within about a second."""
    body = parse_model(PromotionBody, await read_json(request))
    try:
        return await _store(services).put(promotion_id, body)
    except TooManyPromotions as exc:
        raise ValidationFailed(str(exc), detail=[{"type": "too_long", "loc": ["path"],
                                                  "msg": str(exc)}]) from exc
    except (RedisError, OSError) as exc:
        raise _unavailable(exc) from exc


@router.get("/v1/admin/promotions", response_model=PromotionList)
async def list_promotions(services: ServicesDep) -> PromotionList:
    """Every stored promotion (active or not), by id."""
    try:
        return PromotionList(promotions=await _store(services).all())
    except (RedisError, OSError) as exc:
        raise _unavailable(exc) from exc


async def _one(services: ServicesDep, promotion_id: str, *, delete: bool) -> Promotion:
    store = _store(services)
    try:
        promo = await (store.delete if delete else store.get)(promotion_id)
    except (RedisError, OSError) as exc:
        raise _unavailable(exc) from exc
    if promo is None:
        raise PromotionNotFound(f"no promotion {promotion_id!r}")
    return promo


@router.get("/v1/admin/promotions/{promotion_id:id}", response_model=Promotion,
            responses=NOT_FOUND)
async def get_promotion(promotion_id: WrittenIdPath, services: ServicesDep) -> Promotion:
    """One promotion; 404 when there is none with this id."""
    return await _one(services, promotion_id, delete=False)


@router.delete("/v1/admin/promotions/{promotion_id:id}", response_model=Promotion,
               responses=NOT_FOUND)
async def delete_promotion(promotion_id: WrittenIdPath, services: ServicesDep) -> Promotion:
    """Delete a promotion (the deleted one is returned); 404 when there is none."""
    return await _one(services, promotion_id, delete=True)
