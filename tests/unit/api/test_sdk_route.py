"""``GET /sdk/streamrec.js``: the committed browser build, served without a key, cacheable,
and shipped inside the Python package (no Kafka or Redis needed for these routes)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.routes.sdk import IMMUTABLE, SCRIPT_FILE, Script, bundled_script
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DIST = ROOT / "sdk" / "js" / "dist" / "streamrec.js"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(tracking_keys="t" * 16, read_keys="r" * 16, admin_keys="a" * 16,
                              cors_origins="https://shop.example"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


def test_the_package_file_is_the_committed_build() -> None:
    assert SCRIPT_FILE.read_bytes() == DIST.read_bytes()
    script = bundled_script()
    assert script is not None
    package = json.loads((ROOT / "sdk" / "js" / "package.json").read_text())
    assert script.version == package["version"]
    assert gzip.decompress(script.gzipped) == script.body


def test_a_file_without_the_build_banner_is_not_served(tmp_path: Path) -> None:
    other = tmp_path / "x.js"
    other.write_text("alert(1)")
    assert Script.read(other) is None
    assert Script.read(tmp_path / "missing.js") is None


async def test_served_without_a_key_with_short_cache(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sdk/streamrec.js", headers={"Accept-Encoding": "identity"})
    assert resp.status_code == 200
    assert resp.content == DIST.read_bytes()
    assert resp.headers["content-type"] == "text/javascript; charset=utf-8"
    assert resp.headers["cache-control"] == "public, max-age=300"
    assert "content-encoding" not in resp.headers
    etag = resp.headers["etag"]
    again = await client.get("/sdk/streamrec.js", headers={"If-None-Match": etag,
                                                            "Accept-Encoding": "identity"})
    assert again.status_code == 304 and not again.content


async def test_gzip_when_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sdk/streamrec.js", headers={"Accept-Encoding": "gzip, br"})
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.content == DIST.read_bytes()  # httpx decodes it
    assert int(resp.headers["content-length"]) <= 6144  # the SDK's size budget, as sent
    plain = await client.get("/sdk/streamrec.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in plain.headers
    assert resp.headers["etag"] != plain.headers["etag"]


async def test_versioned_name_is_immutable(client: httpx.AsyncClient) -> None:
    script = bundled_script()
    assert script is not None
    resp = await client.get(f"/sdk/streamrec-{script.version}.js")
    assert resp.status_code == 200 and resp.headers["cache-control"] == IMMUTABLE
    assert resp.content == script.body
    wrong = await client.get("/sdk/streamrec-9.9.9.js")
    assert wrong.status_code == 404 and script.version in wrong.json()["error"]["message"]


async def test_any_page_may_load_it(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sdk/streamrec.js", headers={"Origin": "https://elsewhere.example"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.headers["cross-origin-resource-policy"] == "cross-origin"


def _docker_build_context(dest: Path) -> None:
    """What the Dockerfile's build stage copies (``COPY src dst``), symlinks kept as
    links like Docker does."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM ") and dest.exists() and any(dest.iterdir()):
            return  # only the build stage
        parts = line.split()
        if not parts or parts[0] != "COPY" or parts[1].startswith("--"):
            continue
        *sources, target = parts[1:]
        for source in sources:
            src = ROOT / source
            out = dest / target / src.name if target.endswith("/") else dest / target
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, out, symlinks=True, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, out)


def test_the_docker_build_context_ships_the_script(tmp_path: Path) -> None:
    """Building the package from what the Dockerfile copies (setuptools' ``build_py``,
    the step of ``pip install .`` that gathers package data) yields the file itself, not
    a link: a Python-only deployment serves the SDK."""
    context = tmp_path / "src"
    context.mkdir()
    _docker_build_context(context)
    assert (context / "api" / "sdk_dist" / "streamrec.js").is_symlink()
    out = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
         "--build-lib", str(out)],
        cwd=context, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    built = out / "api" / "sdk_dist" / "streamrec.js"
    assert not built.is_symlink() and built.read_bytes() == DIST.read_bytes()


async def test_cors_origin_written_with_a_trailing_slash() -> None:
    app = create_app(Settings(cors_origins=" http://localhost:8080/ ,https://b.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as http:
        for origin in ("http://localhost:8080", "https://b.example"):
            r = await http.options("/v1/events", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
