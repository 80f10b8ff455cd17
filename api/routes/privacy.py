"""Forgetting a user (admin key): ``DELETE /v1/users/{user_id}`` (:mod:`api.forget`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator

from api.auth import Role
from api.deps import ServicesDep, require
from api.forget import forget_user
from api.routes.common import error_responses
from core.limits import MAX_ID_LEN
from schemas import Accepted
from schemas.common import valid_id

router = APIRouter(
    tags=["privacy"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)

ForgottenIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LEN, description="user or anonymous id: at most 256 "
         "UTF-8 bytes, no control characters", examples=["u42"]),
    AfterValidator(valid_id),
]


@router.delete("/v1/users/{user_id}", status_code=202, response_model=Accepted)
async def forget(user_id: ForgottenIdPath, services: ServicesDep) -> Accepted:
    """Forget a user and the anonymous ids identified as it: history, lists, cart and
    purchases are gone within 2 s, and no replay, rebuild or retrain brings them back;
    `ids` lists the ids forgotten (docs/privacy.md says what is kept)."""
    return await forget_user(services, user_id)
