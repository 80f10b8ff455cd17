"""The browser SDK's built script, served by the API itself (no key, cacheable).

``GET /sdk/streamrec.js`` is what the documented snippet loads: cached for
:data:`SHORT_MAX_AGE_S`, so a deployment that upgrades reaches pages within minutes.
``GET /sdk/streamrec-{version}.js`` is the same bytes under the SDK's version, cached for a
year as ``immutable`` (a new version is a new URL); another version is a 404.

The file is ``sdk/js/dist/streamrec.js`` (committed, built by ``npm run build``), shipped
in the Python package as ``api/sdk_dist/streamrec.js`` (a symlink in the repository,
copied by setuptools as package data), so a Python-only deployment needs no Node. Its
version is read from the banner the build writes on its first line.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException

log = logging.getLogger("streamrec.api")

#: Where the built classic script lives inside the installed ``api`` package.
SCRIPT_FILE = Path(__file__).resolve().parent.parent / "sdk_dist" / "streamrec.js"
#: The first line ``sdk/js/scripts/build.mjs`` writes: ``/*! streamrec browser SDK 0.1.0 | ...``.
BANNER = re.compile(rb"/\*! streamrec browser SDK ([0-9A-Za-z.+-]+) ")
SHORT_MAX_AGE_S = 300
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPE = "text/javascript; charset=utf-8"
#: Longest SDK version a versioned script path may name (longer is a 422).
MAX_VERSION_LEN = 64

router = APIRouter(tags=["sdk"])


@dataclass(frozen=True)
class Script:
    """The built script, its gzip form (what most browsers fetch) and their ETags."""

    version: str
    body: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def read(cls, path: Path = SCRIPT_FILE) -> Script | None:
        """The script at ``path``, or None when this installation has none (or it has no
        version banner, i.e. it is not a build of sdk/js)."""
        try:
            body = path.read_bytes()
        except OSError:
            return None
        match = BANNER.match(body)
        if match is None:
            return None
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(version=match.group(1).decode("ascii"), body=body,
                   gzipped=gzip.compress(body, compresslevel=9, mtime=0), etag=f'"{digest}"')


@cache
def bundled_script() -> Script | None:
    """The script shipped with this installation (read once per process)."""
    script = Script.read()
    if script is None:
        log.warning("the browser SDK (%s) is missing: GET /sdk/streamrec.js answers 404",
                    SCRIPT_FILE)
    return script


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        token, _, params = part.strip().partition(";")
        if token.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip()
            return quality not in ("0", "0.0", "0.00", "0.000")
    return False


def _answer(request: Request, script: Script | None, cache_control: str) -> Response:
    if script is None:
        raise HTTPException(404, "the browser SDK is not part of this installation")
    gzipped = _accepts_gzip(request)
    etag = script.etag[:-1] + '-gzip"' if gzipped else script.etag
    headers = {
        "Cache-Control": cache_control,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Any page may load it (also with crossorigin="anonymous" and SRI).
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    wanted = request.headers.get("if-none-match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(script.gzipped if gzipped else script.body, media_type=MEDIA_TYPE,
                    headers=headers)


_SCRIPT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/javascript": {}}, "description": "the classic script"},
    304: {"description": "unchanged (If-None-Match)"},
    404: {"description": "no such version here, or no SDK in this installation"},
}


@router.get("/sdk/streamrec.js", response_class=Response, responses=_SCRIPT_RESPONSES)
async def sdk_script(request: Request) -> Response:
    """The browser SDK (defines `window.StreamRec`); cached for 5 minutes."""
    return _answer(request, bundled_script(), f"public, max-age={SHORT_MAX_AGE_S}")


@router.get("/sdk/streamrec-{version}.js", response_class=Response,
            responses=_SCRIPT_RESPONSES)
async def sdk_script_versioned(
    request: Request,
    version: Annotated[str, PathParam(max_length=MAX_VERSION_LEN, description="SDK version",
                                      examples=["0.1.0"])],
) -> Response:
    """The browser SDK of exactly this version, cached for a year (`immutable`)."""
    script = bundled_script()
    if script is not None and version != script.version:
        raise HTTPException(
            404, f"this API serves the browser SDK {script.version}, not {version!r}")
    return _answer(request, script, IMMUTABLE)
