"""One WARNING when a dependency stops answering, one INFO when it answers again.

The worker's Redis and Kafka watches and the API's producer each say an outage once, not
at every failed call, and say its end with how long it lasted (an operator reading the
log during an outage saw only the clients' own lines before). This is their shared
mechanism; each caller words what the outage means for it.
"""

from __future__ import annotations

import logging
import time


class OutageNotice:
    """Logs an outage's start once (``down``: a %-format of ``where`` and the failure's
    name) and its end once (``back``: a %-format of ``where`` and the seconds it
    lasted) on ``log``."""

    def __init__(self, log: logging.Logger, where: str, down: str, back: str) -> None:
        self.log, self.where, self.down, self.back = log, where, down, back
        self.down_since: float | None = None

    def failed(self, why: str) -> None:
        """A call failed (``why``: the error's name); logged once per outage."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self.log.warning(self.down, self.where, why)

    def answered(self) -> None:
        """A call succeeded; logs the end of an outage, if one was logged."""
        if self.down_since is None:
            return
        self.log.info(self.back, self.where, time.monotonic() - self.down_since)
        self.down_since = None
