"""The operator dashboard: the page (``GET /dashboard``, no key: it holds no data, only a
login form) and its one data request per refresh (``GET /v1/admin/dashboard``, admin
key, from :class:`api.dashboard_feed.DashboardFeed`'s cached aggregate).

The page is plain HTML, CSS and JavaScript shipped in the ``api`` package
(``api/dashboard/``, package data) with hand-written SVG charts: nothing is fetched from
a CDN or built at serve time, so it works offline. Its Content-Security-Policy allows
scripts, styles and requests only from this origin and no form submission at all (the
admin key must never end up in a URL, even if the script failed to load).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException

from api.auth import Role
from api.dashboard_feed import DashboardFeed
from api.deps import require
from api.routes.common import error_responses
from schemas.admin import DashboardData

#: The page's files inside the installed ``api`` package.
STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"
#: Files the page loads (nothing else under STATIC_DIR is served).
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "lookup.js": "text/javascript; charset=utf-8",
}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate each time (ETag): an upgraded API shows its own page at once.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["operations"])


@dataclass(frozen=True)
class Asset:
    """One file of the page and its ETag."""

    body: bytes
    media_type: str
    etag: str


def asset(name: str) -> Asset | None:
    """The named file of the page (read once per process), None when not shipped.

    Only names in :data:`ASSETS` reach the cache: the name comes from the URL of a
    public route, and caching every name asked for (``None`` for the unknown ones) grew
    the API's memory by ~180 B per fresh name, without bound."""
    return _read_asset(name) if name in ASSETS else None


@cache
def _read_asset(name: str) -> Asset | None:
    """:func:`asset` of a name in :data:`ASSETS` (cached: at most one entry per file)."""
    try:
        body = (STATIC_DIR / name).read_bytes()
    except OSError:
        return None
    return Asset(body, ASSETS[name], f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _serve(request: Request, name: str) -> Response:
    found = asset(name)
    if found is None:
        raise HTTPException(404, "no such file of the dashboard")
    headers = {**HEADERS, "ETag": found.etag}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page(request: Request) -> Response:
    """The dashboard page (a login form until an admin key is given)."""
    return _serve(request, "index.html")


@router.get("/dashboard/{name}", include_in_schema=False)
async def dashboard_asset(
    request: Request,
    name: Annotated[str, PathParam(max_length=64)],
) -> Response:
    """The page's stylesheet and scripts."""
    if name == "index.html":
        raise HTTPException(404, "no such file of the dashboard")
    return _serve(request, name)


def feed_of(request: Request) -> DashboardFeed:
    """The process's dashboard aggregate (set up by the app's lifespan)."""
    feed: DashboardFeed = request.app.state.dashboard_feed
    return feed


@router.get(
    "/v1/admin/dashboard",
    response_model=DashboardData,
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 429, 503),
)
async def dashboard_data(request: Request) -> Response:
    """Everything the dashboard shows: pipeline (the numbers of `streamrec status
    --json`), rates and history for the charts, shop lists and attribution, and the
    report of each experiment (running ones first, then stopped ones; null when Redis
    cannot say). One cached aggregate per API process, recomputed at most every 2 s."""
    body = await feed_of(request).body()
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "no-store"})
