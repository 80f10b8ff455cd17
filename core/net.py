"""Loopback networking helpers shared by every layer: free ports and waiting for a listener.

The worker picks a free metrics port with them, the embedded stack and the test fixtures
wait for the servers they start.
"""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
