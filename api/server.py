"""``run_api``: serve the app with uvicorn (``streamrec api`` calls it).

Several API processes share one port when ``STREAMREC_API_REUSE_PORT`` is on (``streamrec
up --api-processes M`` turns it on): each binds the port with ``SO_REUSEPORT`` and Linux
spreads incoming connections over the listening processes. Chosen over uvicorn's
``--workers`` (a supervisor forking children) and over a proxy in front: every API
process is then an ordinary process of its own that ``up`` records, ``status`` lists,
``down`` stops and ``up`` restarts alone when it died, with nothing in front that could
fail for all of them; the processes are stateless, so any of them may answer any request.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
from typing import Any

import uvicorn

from api.app import create_app
from core.settings import Settings

#: uvicorn's exit code when the app did not start.
STARTUP_FAILURE = 3


def event_loop_name() -> str:
    """``uvloop`` when installed, else the standard ``asyncio`` loop."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def server_options() -> dict[str, Any]:
    """uvicorn settings of the API process, shared with ``bench serve``'s bare endpoint
    so both run on the same loop, HTTP parser and process count. With httptools (a
    dependency) the protocol is :class:`api.http_protocol.JsonHttpToolsProtocol`: the
    requests the parser refuses get the API's JSON error body too."""
    http: Any = "h11"
    if importlib.util.find_spec("httptools"):
        from api.http_protocol import JsonHttpToolsProtocol

        http = JsonHttpToolsProtocol
    return {"loop": event_loop_name(), "http": http,
            "access_log": False, "server_header": False, "proxy_headers": True}


def shared_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with ``SO_REUSEPORT``, not yet listening: uvicorn
    listens only after the app's startup, so a process still starting gets no
    connections from the kernel."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def run_api(settings: Settings) -> None:
    """Serve the API on ``settings.api_host:api_port`` until interrupted (sharing the
    port with other API processes when ``settings.api_reuse_port``)."""
    from core.logging_setup import configure_logging, connections_line

    level = settings.log_level.upper()
    configure_logging(level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=level.lower(),
        log_config=None,  # keep streamrec's one-line log format
        forwarded_allow_ips=settings.api_forwarded_allow_ips,
        **server_options(),
    )
    server = uvicorn.Server(config)
    # uvicorn names the address only when it binds the socket itself, so a process on a
    # shared port (the embedded stack's) never said where it served, or against what.
    logging.getLogger("streamrec.api").info(
        "API starting on http://%s:%d: %s, auth %s", settings.api_host, settings.api_port,
        connections_line(settings),
        "on" if settings.auth_enabled else "OFF (no keys configured)")
    try:
        if settings.api_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            server.run(sockets=[shared_socket(settings.api_host, settings.api_port)])
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
