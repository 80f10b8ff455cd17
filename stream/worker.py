"""The worker process: its Faust app wired from the modules of ``stream/``, and its entry
point.

Laid out like faust-streaming's package example, one concern per module:

:mod:`stream.app`
    the App and its configuration;
:mod:`stream.topics`
    the events, catalog and dead-letter topics;
:mod:`stream.history_store`
    the changelog-backed table of entity histories;
:mod:`stream.agents`
    the events and catalog agents (decode, validate, hand to the processor);
:mod:`stream.timers`
    heartbeat, broker watch, lag, model hot swap, idle sweep, flush watch, scheduled
    retrain, history expiry, old anonymous-id sets' expiry, pending forget sweeps;
:mod:`stream.rebalance`
    partition revocation and assignment hooks;
:mod:`stream.state`
    what they share (Redis, the processor, the live model).

``run_worker(settings)`` builds the app from settings and runs one worker process;
``streamrec worker`` (and ``python -m streamrec.cli worker``) call it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import faust
from prometheus_client import start_http_server

from core.broker import fetch_wait_ms, is_tansu
from core.logging_setup import connections_line
from core.net import free_port
from core.settings import Settings
from stream import faust_compat
from stream.agents import register_agents
from stream.app import build_app
from stream.history_store import history_table
from stream.rebalance import register_rebalance_hooks
from stream.state import WorkerState
from stream.timers import register_timers
from stream.topics import define_topics

if TYPE_CHECKING:
    from stream.faust_compat.recovery_ends import EndOffsets

log = logging.getLogger("streamrec.worker")


def changelog_ends(settings: Settings) -> EndOffsets:
    """The reader of changelog end offsets for table recovery: the fetch high watermark
    on Tansu, whose ListOffsets answers low (:mod:`stream.faust_compat.recovery_ends`);
    Faust's own answer on Apache Kafka."""
    from core.kafka_tools import client_options
    from stream.faust_compat.recovery_ends import fetch_end_offsets

    return fetch_end_offsets(client_options(settings), lambda: is_tansu(settings))


def create_app(settings: Settings) -> tuple[faust.App, WorkerState]:
    """The Faust app for these settings, with its agents, timers and hooks attached.

    Refuses to build it on a Faust, mode or aiokafka version the patches of
    :mod:`stream.faust_compat` were not checked on (``UnknownFaustVersion``).
    """
    # Each event changes at most one history: a few steps' worth of changelog records
    # may wait to be produced without pausing delivery (stream.faust_compat.producer_ebb).
    # Versions first: a refusal names them before any broker is asked anything.
    faust_compat.check_versions(unsafe=settings.faust_compat_unsafe)
    faust_compat.install(fetch_max_wait_ms=fetch_wait_ms(settings),
                         max_pending_records=4 * settings.stream_step_events,
                         changelog_ends=changelog_ends(settings),
                         unsafe=settings.faust_compat_unsafe)
    state = WorkerState(settings)
    app = build_app(settings)
    topics = define_topics(app, settings)
    table = history_table(app, settings)
    register_agents(app, state, topics, table)
    register_timers(app, state, table)
    register_rebalance_hooks(app, state)
    app.streamrec_state = state  # type: ignore[attr-defined]
    return app, state


def run_worker(settings: Settings) -> None:
    """Run one worker process until SIGTERM/SIGINT."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    app, state = create_app(settings)
    port = settings.worker_metrics_port or free_port()
    start_http_server(port, addr=settings.worker_metrics_host)
    state.metrics_port = port
    log.info("worker starting: %s, consumer group %s, metrics on http://%s:%d/metrics",
             connections_line(settings, _broker_kind(settings)), settings.app_id,
             settings.worker_metrics_host, port)
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True,
                    override_logging=False)
    # Faust's start-up spinner writes a terminal escape (show cursor) even to a file,
    # where it glued itself to the next log line; without it Faust logs "Ready" instead.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # how Faust always returns
        if exc.code in (0, None):
            log.info("worker stopped cleanly")
        else:
            log.error("worker stopped with exit code %s (the lines above say why)", exc.code)
        raise


def _broker_kind(settings: Settings) -> str | None:
    """``tansu`` or ``apache-kafka`` (with its protocol version) for the start-up line;
    None when the broker does not answer now (the worker retries on its own)."""
    from core.broker import describe_broker

    try:
        info = describe_broker(settings)
    except Exception:  # noqa: BLE001 - only the log line lacks it
        return None
    return f"{info.kind} {info.version}" if info.version else info.kind
