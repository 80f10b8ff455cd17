"""Loopback networking helpers shared by every layer: free ports, waiting for a listener,
and the URL a client on this machine reaches a local server at.

The worker picks a free metrics port with them, the embedded stack and the test fixtures
wait for the servers they start, and every command finds the API with
:func:`local_http_url`.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

#: The largest TCP port: every port setting, address and picked port is in 1..MAX_PORT
#: (0 = let the system pick, where a setting allows it).
MAX_PORT = 65535


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (Linux default
    32768-60999; the IANA range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, MAX_PORT


_LOWEST_PICKED = 20000
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, below the kernel's ephemeral range.

    A server started on a port the kernel hands out itself can lose it before it binds:
    any outgoing connection may take the same number as its source port (a Kafka node
    of the test suite failed that way while other test processes were connecting).
    Ports below the ephemeral range are only ever taken by a bind, and one process never
    gets the same number twice.
    """
    low, _ = ephemeral_range()
    candidates = range(_LOWEST_PICKED, low) if low - _LOWEST_PICKED >= 1000 else range(0)
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port not in _GIVEN and bindable(host, port):
            _GIVEN.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bindable(host: str, port: int) -> bool:
    """True when a listening socket could bind host:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listen_error(host: str, port: int, *, reuse_port: bool = False) -> OSError | None:
    """Why a server could not listen on host:port now (None if it could): the port in
    use, or a host that does not resolve or is no address of this machine. Binds as
    servers do (SO_REUSEADDR; SO_REUSEPORT too with ``reuse_port``), IPv6 hosts included;
    an empty host is every address."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
    except OSError as exc:
        return exc
    return None


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``: the loopback
    address for a wildcard bind (``""``, ``0.0.0.0``, ``::``), else ``host`` itself."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def local_http_url(host: str, port: int) -> str:
    """The base URL a client on this machine uses for an HTTP server bound to ``host``
    and ``port`` (the API's ``STREAMREC_API_HOST`` and ``STREAMREC_API_PORT``): a wildcard
    bind becomes the loopback address (:func:`connect_host`), an IPv6 address goes in
    brackets (``http://[::1]:8000``)."""
    host = connect_host(host.strip("[]"))
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float = 20.0, proc: subprocess.Popen[bytes]
                  | None = None) -> None:
    """Block until host:port accepts connections; fail fast if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def bootstrap_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when at least one server of a ``host:port[,host:port...]`` list accepts TCP
    connections (a quick check before a Kafka client would wait its request timeout)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit() and port_open(host.strip("[]"), int(port), timeout):
            return True
    return False
