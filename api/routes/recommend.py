"""Recommendation lists (read key): personal, similar items, popular, trending."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth import Role
from api.deps import ExcludeDep, ReaderDep, require
from api.ranking import POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN, user_chain
from api.reader import ListQuery
from api.routes.common import ItemIdPath, UserIdPath, error_responses
from schemas import RecommendationList

router = APIRouter(
    tags=["recommendations"],
    dependencies=[Depends(require(Role.READ))],
    responses=error_responses(401, 403, 422),
)

N = Annotated[int, Query(ge=1, le=100, description="number of items (1..100)")]
OptionalId = Annotated[str | None, Query(min_length=1, max_length=256)]


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendationList)
async def user_recommendations(
    user_id: UserIdPath,
    reader: ReaderDep,
    exclude: ExcludeDep,
    n: N = 10,
    context: Annotated[
        str | None,
        Query(max_length=64, description="page type; `product` with `item_id` puts that "
                                         "item's neighbours first", examples=["home"]),
    ] = None,
    item_id: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="the product being viewed"),
    ] = None,
) -> RecommendationList:
    """Items for a user or anonymous id: personal list, then session, then popular."""
    chain = user_chain(context, item_id)
    anchor = item_id if context == "product" else None
    return await reader.recommend(
        ListQuery(chain, n, entity=user_id, anchor=anchor, exclude=exclude)
    )


@router.get("/v1/items/{item_id}/similar", response_model=RecommendationList)
async def similar_items(
    item_id: ItemIdPath,
    reader: ReaderDep,
    exclude: ExcludeDep,
    n: N = 10,
    user_id: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="leave out this user's purchases"),
    ] = None,
) -> RecommendationList:
    """Items similar to one item (model neighbours, then co-occurrence, then popular)."""
    return await reader.recommend(
        ListQuery(SIMILAR_CHAIN, n, entity=user_id, anchor=item_id, exclude=exclude)
    )


@router.get("/v1/popular", response_model=RecommendationList)
async def popular(reader: ReaderDep, exclude: ExcludeDep, n: N = 10) -> RecommendationList:
    """The all-time most popular items."""
    return await reader.recommend(ListQuery(POPULAR_CHAIN, n, exclude=exclude, blend=False))


@router.get("/v1/trending", response_model=RecommendationList)
async def trending(reader: ReaderDep, exclude: ExcludeDep, n: N = 10) -> RecommendationList:
    """Items gaining attention now (forward-decayed scores)."""
    return await reader.recommend(ListQuery(TRENDING_CHAIN, n, exclude=exclude, blend=False))
