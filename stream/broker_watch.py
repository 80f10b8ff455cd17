"""The worker's word on a broker outage: one WARNING when Kafka stops answering, one INFO
when it answers again.

Why: during a Kafka outage the worker's log held only the Kafka client's own lines
(``Unable connect to node with id 1``, ``Heartbeat session expired``), which say neither
what the worker does meanwhile nor when it was over. The API says the same for its
writes (``api.producer``: ``Kafka at … does not take writes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.outage_notice import OutageNotice

log = logging.getLogger("streamrec.worker")

#: How long one probe waits for a TCP connection (a timer of 2 s runs it).
PROBE_TIMEOUT_S = 1.5


async def unreachable(bootstrap: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a server of the ``host:port[,host:port...]`` list accepts a TCP
    connection now; else why the last one did not (the error's type)."""
    why = "no server named"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout_s)
        except (OSError, TimeoutError) as exc:
            why = type(exc).__name__
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None
    return why


class BrokerOutageNotice(OutageNotice):
    """Logs the start of a Kafka outage once and its end once, with how long it lasted."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(
            log, bootstrap,
            "Kafka at %s does not answer (%s): the worker reads and applies no events until "
            "it is back (the API answers tracking writes 503; what it acknowledged stays in "
            "Kafka, nothing is lost) and reconnects by itself; check the brokers",
            "Kafka at %s answers again after %.0fs; the worker rejoins its group and "
            "catches up")
