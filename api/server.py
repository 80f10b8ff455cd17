"""``run_api``: serve the app with uvicorn (``streamrec api`` calls it)."""

from __future__ import annotations

import importlib.util
from typing import Any

import uvicorn

from api.app import create_app
from core.settings import Settings


def event_loop_name() -> str:
    """``uvloop`` when installed, else the standard ``asyncio`` loop."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def server_options() -> dict[str, Any]:
    """uvicorn settings of the API process, shared with ``bench serve``'s bare endpoint
    so both run on the same loop, HTTP parser and process count."""
    return {"loop": event_loop_name(),
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
            "access_log": False, "server_header": False, "proxy_headers": True}


def run_api(settings: Settings) -> None:
    """Serve the API on ``settings.api_host:api_port`` until interrupted."""
    from core.logging_setup import configure_logging

    level = settings.log_level.upper()
    configure_logging(level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=level.lower(),
        log_config=None,  # keep streamrec's one-line log format
        **server_options(),
    )
