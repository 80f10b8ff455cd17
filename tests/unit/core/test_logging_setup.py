"""The one log format, and the kafka-python noise it drops."""

from __future__ import annotations

import io
import logging

from kafka.errors import Cancelled, KafkaConnectionError

from core.logging_setup import configure_logging


def test_a_refresh_cancelled_by_close_is_not_an_error_line() -> None:
    # Seen after `streamrec train` now and then: kafka-python's own close() cancels a
    # metadata refresh in flight and logs it at ERROR; nothing had failed.
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    try:
        cluster = logging.getLogger("kafka.cluster")
        cluster.error("Metadata refresh: failed %s", Cancelled())
        cluster.error("Metadata refresh: failed %s", KafkaConnectionError("refused"))
        configure_logging("INFO", stream=out)  # twice: still one filter
        assert len(cluster.filters) == 1
    finally:
        configure_logging("INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "KafkaConnectionError" in lines[0] and "level=ERROR" in lines[0]
