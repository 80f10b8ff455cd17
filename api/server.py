"""``run_api``: serve the app with uvicorn (``streamrec api`` calls it)."""

from __future__ import annotations

import importlib.util

import uvicorn

from api.app import create_app
from streamrec.settings import Settings


def event_loop_name() -> str:
    """``uvloop`` when installed, else the standard ``asyncio`` loop."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run_api(settings: Settings) -> None:
    """Serve the API on ``settings.api_host:api_port`` until interrupted."""
    from streamrec.logging_setup import configure_logging

    level = settings.log_level.upper()
    configure_logging(level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop=event_loop_name(),
        log_level=level.lower(),
        access_log=False,
        log_config=None,  # keep streamrec's one-line log format
        server_header=False,
        proxy_headers=True,
    )
