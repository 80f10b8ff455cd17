"""``streamrec up --restart``: replace the running workers and API processes one at a time
(a rolling restart, to deploy new code or settings) while the others keep serving.

An API process's replacement starts first and binds the shared port (``SO_REUSEPORT``);
only once it answers does the old one get SIGTERM, which lets uvicorn finish the requests
in flight: the port always has a listener. A worker's replacement joins the consumer
group first too; the old one then leaves it (SIGTERM), and the group hands its partitions
to the others: the events are processed by whichever owns them, never skipped.
"""

from __future__ import annotations

from dataclasses import replace

from redis.exceptions import RedisClusterException, RedisError

from core.settings import Settings
from streamrec.stack.children import spawn_child, wait_ready
from streamrec.stack.plan import Plan, stop
from streamrec.stack.probes import drop_heartbeat
from streamrec.stack.records import members, save_state


def roll(plan: Plan, child_settings: Settings, address: str, timeout_s: float) -> int:
    """Replace every worker and API process that ``up`` kept running by a new one started
    with ``child_settings``, one at a time: start it, wait until it is ready, then stop the
    old one. Returns how many were replaced."""
    state, echo = plan.state, plan.echo
    kept = [rec for component in ("worker", "api") for rec in members(state.processes, component)
            if rec.name in plan.alive and rec.name not in plan.fresh]
    for old in kept:
        echo(f"restarting the {old.label} (pid {old.pid}): its replacement starts first")
        rec, proc, since = spawn_child(old.name, child_settings, plan.log_dir,
                                       address if old.component == "api" else "")
        alone = replace(state, processes={old.name: rec})
        try:
            wait_ready(alone, {old.name: (proc, since)}, timeout_s)
        except BaseException:
            stop(rec)  # the old process keeps running and stays recorded
            raise
        stop(old)
        state.processes[old.name] = rec  # recorded first: `down` must find it, whatever
        save_state(plan.settings, state)  # the heartbeat clean-up below meets
        if old.component == "worker" and state.redis_url:
            # gone now: a heartbeat it left (an older version's worker does not remove
            # it) would show it in `status`, stale, beside its successor
            try:
                drop_heartbeat(state.redis_url, old.pid)
            except (RedisError, RedisClusterException, OSError) as exc:  # expires (~15 s)
                echo(f"the stopped worker's heartbeat stays until it expires (~15 s): "
                     f"Redis did not answer ({type(exc).__name__})")
        echo(f"the {rec.label} runs as pid {rec.pid}; stopped pid {old.pid}")
    return len(kept)
