"""Never serve from a Redis that is behind the log (see :mod:`stream.applied`).

Two moments can tell: a starting worker compares the offsets Redis says it applied with
the group's committed offsets, and a running worker's recording script notices an applied
offset that went back under what it recorded. Either way the derived state is wiped here
and the flushed-Redis watcher (:func:`stream.rebuild.rebuild_if_flushed`) replays it from
the log within seconds.
"""

from __future__ import annotations

from stream.applied import ahead_of_log, behind_log, recover_stale
from stream.state import WorkerState


async def check_redis_current(state: WorkerState) -> None:
    """At start: wipe Redis's derived state when it has applied less of the log than the
    group committed (a Redis restored from an older snapshot), or more than the log holds
    (Redis derived from another log: a new or recreated Kafka log, on Apache Kafka)."""
    settings = state.settings
    ahead = await ahead_of_log(settings, state.redis, state.keys)
    behind, committed = await behind_log(settings, state.redis, state.keys)
    if ahead:
        await recover_stale(state.redis, state.keys, "; ".join(ahead[:4]), committed,
                            other_log=(settings.topic_events, settings.topic_catalog))
    elif behind:
        await recover_stale(state.redis, state.keys, "; ".join(behind[:4]), committed)


async def recover_lost_writes(state: WorkerState) -> None:
    """Between batches: Redis went back under this worker; wipe it for the rebuild."""
    reason = state.applied.stale_reason or "Redis lost writes"
    await recover_stale(state.redis, state.keys, reason, dict(state.applied.last))
    state.applied.stale_reason = None
