"""``run_api``: serve the app with uvicorn (``streamrec api`` calls it)."""

from __future__ import annotations

import importlib.util
import logging

import uvicorn

from api.app import create_app
from streamrec.settings import Settings


def event_loop_name() -> str:
    """``uvloop`` when installed, else the standard ``asyncio`` loop."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run_api(settings: Settings) -> None:
    """Serve the API on ``settings.api_host:api_port`` until interrupted."""
    level = settings.log_level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop=event_loop_name(),
        log_level=level.lower(),
        access_log=False,
        server_header=False,
        proxy_headers=True,
    )
