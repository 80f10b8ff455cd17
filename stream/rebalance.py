"""What the worker does when Kafka moves partitions between workers."""

from __future__ import annotations

import logging
from typing import Any

import faust

from stream.state import WorkerState

log = logging.getLogger("streamrec.worker")


def register_rebalance_hooks(app: faust.App, state: WorkerState) -> None:
    """Forget the refresh sweep's entities and the applied offsets this worker tracked on
    revocation; report ready once assigned."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_partitions_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Another worker may own those histories now; re-listing them from the copy left
        # here could overwrite its fresher lists.
        state.processor.sweep.forget()
        state.applied.forget()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        state.ready = True
        log.info("worker %s ready (partitions assigned)", state.worker_id)
