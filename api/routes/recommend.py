"""Recommendation lists (read key): personal by page context, similar, popular, trending.

Every endpoint takes the merchandising parameters of :mod:`api.filters` (``category``,
``price_min``, ``price_max``, ``max_per_category``, ``explain``).

Routes answer with pre-rendered orjson bytes: the body is built as plain data by the
reader (already in the ``RecommendationList`` shape), so re-validating it through the
response model would only cost time on the hottest path. ``response_model`` still
documents the shape in OpenAPI.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import ExcludeDep, ReadAccess, ReaderDep
from api.filters import MerchDep
from api.list_query import ListQuery
from api.methods import is_head
from api.ranking import POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN, user_chain
from api.routes.common import ItemIdPath, UserIdPath, error_responses
from core.limits import DEFAULT_N, MAX_CONTEXT_LEN, MAX_ID_LEN, MAX_N, MIN_N
from schemas import RecommendationList

router = APIRouter(
    tags=["recommendations"],
    responses=error_responses(401, 403, 422, 429),
)

N = Annotated[int, Query(ge=MIN_N, le=MAX_N, description=f"number of items ({MIN_N}..{MAX_N})",
                         examples=[DEFAULT_N])]


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v1/users/{user_id:id}/recommendations", response_model=RecommendationList)
async def user_recommendations(
    request: Request,
    user_id: UserIdPath,
    reader: ReaderDep,
    rate: ReadAccess,
    exclude: ExcludeDep,
    merch: MerchDep,
    n: N = DEFAULT_N,
    context: Annotated[
        str | None,
        Query(max_length=MAX_CONTEXT_LEN,
              description="page type: `home` (personal list; the default), `product` with "
                          "`item_id` (items similar to it, ordered by this shopper's taste), "
                          "`cart` (complements of the cart: items carted or bought together), "
                          "`checkout` (complements of the cart, led by the consumables "
                          "this shopper buys again when the deployment sets "
                          "`STREAMREC_BUY_AGAIN=true`; off by default). Other values "
                          "are served as `home`.",
              examples=["home", "product", "cart", "checkout"]),
    ] = None,
    item_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_ID_LEN,
              description="`product`: the item being viewed; `cart`/`checkout`: an item "
                          "just added (joins the cart's items)", examples=["sku-1"]),
    ] = None,
) -> Response:
    """Items for a user or anonymous id, for the page the shopper is on."""
    effective, chain = user_chain(context, item_id)
    return _json(await reader.recommend(ListQuery(
        chain, n, entity=user_id, anchor=item_id if effective != "home" else None,
        exclude=exclude, context=effective, rate=rate, merch=merch,
        probe=is_head(request.scope),
    )))


@router.get("/v1/items/{item_id:id}/similar", response_model=RecommendationList)
async def similar_items(
    request: Request,
    item_id: ItemIdPath,
    reader: ReaderDep,
    rate: ReadAccess,
    exclude: ExcludeDep,
    merch: MerchDep,
    n: N = DEFAULT_N,
    user_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_ID_LEN, description="leave out this user's purchases",
              examples=["u42"]),
    ] = None,
) -> Response:
    """Items similar to one item (model neighbours, then co-occurrence, then popular)."""
    return _json(await reader.recommend(ListQuery(
        SIMILAR_CHAIN, n, entity=user_id, anchor=item_id, exclude=exclude, context="similar",
        rate=rate, merch=merch, probe=is_head(request.scope),
    )))


@router.get("/v1/popular", response_model=RecommendationList)
async def popular(reader: ReaderDep, rate: ReadAccess, exclude: ExcludeDep, merch: MerchDep,
                  n: N = DEFAULT_N) -> Response:
    """The all-time most popular items."""
    return _json(await reader.recommend(ListQuery(
        POPULAR_CHAIN, n, exclude=exclude, raw_scores=True, context="popular", rate=rate,
        merch=merch,
    )))


@router.get("/v1/trending", response_model=RecommendationList)
async def trending(reader: ReaderDep, rate: ReadAccess, exclude: ExcludeDep, merch: MerchDep,
                   n: N = DEFAULT_N) -> Response:
    """Items gaining attention now (forward-decayed scores)."""
    return _json(await reader.recommend(ListQuery(
        TRENDING_CHAIN, n, exclude=exclude, raw_scores=True, context="trending", rate=rate,
        merch=merch,
    )))
