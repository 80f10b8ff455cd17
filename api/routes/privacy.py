"""Forgetting a user (admin key): ``DELETE /v1/users/{user_id}`` (:mod:`api.forget`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import Role
from api.deps import ServicesDep, require
from api.forget import forget_user
from api.routes.common import WrittenIdPath, error_responses
from schemas import Accepted

router = APIRouter(
    tags=["privacy"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)


@router.delete("/v1/users/{user_id:id}", status_code=202, response_model=Accepted)
async def forget(user_id: WrittenIdPath, services: ServicesDep) -> Accepted:
    """Forget a user and the anonymous ids identified as it: history, lists, cart and
    purchases are gone within 2 s, and no replay, rebuild or retrain brings them back;
    `ids` lists the ids forgotten (docs/privacy.md says what is kept)."""
    return await forget_user(services, user_id)
