"""Free ports stay clear of the kernel's source ports, so a server we start keeps its port."""

from __future__ import annotations

import socket

from core.net import ephemeral_range, free_port


def test_free_ports_are_below_the_ephemeral_range_and_distinct() -> None:
    low, high = ephemeral_range()
    assert low < high
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports)


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_the_local_url_of_a_server_reaches_it_from_this_machine() -> None:
    from core.net import local_http_url

    assert local_http_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    for wildcard in ("", "0.0.0.0", "::"):  # every address: reached on the loopback one
        assert local_http_url(wildcard, 8000) == "http://127.0.0.1:8000"
    assert local_http_url("::1", 8000) == "http://[::1]:8000"  # a URL, not "http://::1:8000"
    assert local_http_url("[::1]", 8000) == "http://[::1]:8000"
    assert local_http_url("10.0.0.5", 9) == "http://10.0.0.5:9"


def test_no_tool_builds_the_api_url_itself() -> None:
    """Every command finds the API through :func:`core.net.local_http_url` (the API's own
    start-up line names its bind address, not this URL): before it, seven copies differed
    (no brackets for IPv6, a wildcard bind kept, or the host ignored)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    found = [f"{path.relative_to(root)}:{n}"
             for package in ("core", "streamrec")
             for path in sorted((root / package).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "http://" in line and ("api_host" in line or "api_port" in line)]
    assert found == []


def test_the_port_bound_is_spelled_once() -> None:
    """Settings, their checks, the state file and the cluster's port pairs all read
    :data:`core.net.MAX_PORT` (``core.limits.MAX_URL_BYTES`` is the same number for
    another reason: the HTTP parser's 16-bit URL offsets)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    spelled = re.compile(r"\b65_?535\b")
    found = sorted({str(path.relative_to(root))
                    for package in ("core", "schemas", "stream", "api", "streamrec")
                    for path in (root / package).rglob("*.py")
                    if spelled.search(path.read_text(encoding="utf-8"))})
    assert found == ["core/limits.py", "core/net.py"]
