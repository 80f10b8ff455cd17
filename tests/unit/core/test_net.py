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
