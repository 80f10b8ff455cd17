"""How long a Redis call of the worker or of a CLI tool may wait: fields of the settings.

A base class of :class:`core.settings.Settings` (the one settings object every process
reads, prefix ``STREAMREC_``), kept apart so each module stays one screenful of
concepts; nothing reads this class on its own. :func:`core.redis_client.async_client` and
:func:`core.redis_client.sync_client` give every client these timeouts unless its caller
names its own.

Why: a Redis that accepts connections but never answers (a stopped ``redis-server``, a
partition that drops packets) held the worker's batch step, its rebalance callbacks and
its timers for ever: nothing logged, no heartbeat, ``status`` blind. With a read timeout
the call fails with ``redis.exceptions.TimeoutError``, a ``RedisError``, which every
outage path already handles: the batch step is retried until Redis answers
(``stream.rebuild.retry_redis``, no event lost), a timer skips a tick.

The read timeout bounds the wait for *one reply* (redis-py sends a pipeline's commands,
then reads each reply under its own timeout), never a whole pipeline or a whole replay.
No call here holds Redis for long: the largest reply is a model's item factors (20k
items x 64 factors: 5 MB, milliseconds on a LAN), the heaviest script applies one batch
of events (milliseconds), the only blocking command is ``WAIT`` on a Redis Cluster
(``core.redis_client.REPLICATION_WAIT_MS``, 2 s), and key wipes ``UNLINK`` in chunks of
1000 (the memory is freed in the background). The default leaves a wide margin above
those for a loaded Redis's pauses (a fork for a snapshot, an AOF rewrite's fsync),
which last well under a second. The API does not use these: its serving budget is
shorter (``api.script_conn.REPLY_TIMEOUT_S``), it answers from its fallback or a 503.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisTimeoutSettings(BaseSettings):
    """The Redis timeout fields of :class:`core.settings.Settings`."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore",
                                      allow_inf_nan=False)

    redis_timeout_s: float = Field(
        10.0, gt=0, le=600, description="seconds a worker's or CLI tool's Redis call waits "
        "for its reply; later is an outage (the worker retries the batch, nothing is lost)"
    )
    redis_connect_timeout_s: float = Field(
        5.0, gt=0, le=600, description="seconds a worker's or CLI tool's connection to "
        "Redis may take to open; later is an outage, as above"
    )
