"""``streamrec replay``: rebuild derived state from the log, or re-drive a time range.

Kafka is the truth and Redis a cache, so ops can always start over from the topic:

``--rebuild`` (optionally ``--from-time T``)
    1. stops the worker(s): the embedded stack's worker is stopped and restarted here;
       external workers must be stopped first (live heartbeats refuse the rebuild);
    2. wipes streamrec's derived Redis keys (lists, histories' outputs, item statistics,
       popular/trending, co-occurrence, dedupe sets, counters, experiment outcomes).
       Kept: experiment definitions and assignments (not in the log), model artefacts
       (``model:*``, retrains are expensive and the log does not contain them), catalog
       state (``i:*:meta``, ``items:*``, fed by the catalog topic which is not reset),
       worker heartbeats and the forgotten ids, those whose sweep the stopped worker
       left pending too (the restarted one takes it up: ``stream.forget``);
    3. empties the ``user_history`` table: on Apache Kafka by deleting its changelog
       topic (the worker creates it again, compacted, when it starts); on Tansu, which
       can neither delete records nor compact, by writing a tombstone for every key of
       the changelog, the only way to make a restarted worker recover an empty table;
    4. restores Redis's ``forgotten`` hash from the ``forgotten`` topic (kept by the wipe;
       restored in case Redis lost it), so the worker skips every event of a forgotten
       user received before the forget (``stream.forget``), and copies the applied
       offsets of ``events`` into ``RedisKeys.forwarded`` (an earlier replay's higher
       mark kept): the forwards of identified anonymous histories up to there are in
       the log, and are not sent again;
    5. records the ``events`` topic's end offsets in Redis (``replay:ends``, replacing
       the last replay's), so the workers count the events below them as catch-up, not
       freshness samples (``core.ops_records.replayed``), then commits the worker group's
       offsets on ``events`` to 0, or to the first record at or after ``T`` (Kafka's
       ListOffsets by time; on Tansu, which answers every ListOffsets-by-time with 0, a
       binary search over record timestamps);
    6. restarts the worker, which reprocesses from there, and follows it to the log's
       end as a progress bar with ETA, from the group's committed offsets (``--no-wait``
       returns at once; a worker that makes no progress for 5 minutes is an error).
    Steps 4–5 run before 2–3: a replay interrupted between them leaves the group at its
    new offsets, so the worker ``streamrec up`` restarts reprocesses from there (before,
    it resumed at the log's end over a wiped Redis and never refilled it).
    Steps 1–5 hold the rebuild lock of the workers' own rebuilds and wipes and of
    ``streamrec rebuild`` (``stream.rebuild.rebuild_lock_held``): while another process
    holds it, the command exits 1 having changed nothing.
    With ``--from-time`` and no wipe (``--keep-state``) only the offsets move: useful
    after Redis lost data written after ``T``; event ids keep every effect single.

``--from-time A --to-time B [--speed N|max]``
    Re-drives the records of ``events`` whose timestamps fall in ``[A, B)`` onto the
    events topic again (same key, value and partition), at N× the original pace or as
    fast as possible: every partition is read from A to its end (backfilled records may
    sit behind newer ones), copies left by an earlier re-drive skipped. Every event
    keeps its id, so the derived state does not change: replaying a range twice leaves
    Redis as after once (except the ``stats`` counters and worker heartbeats, which
    count work done, not state). Events of forgotten users received before the forget
    are left out of the re-driven records (``stream.forget``).

Times are epoch seconds or ISO-8601; record timestamps are producer create times (the
API's accept time; ``streamrec load --via kafka`` sets them to event time).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.ops.group_offsets import (
    ReplayError,
    commit_group_offsets,
    follow_group,
    offsets_for_time,
)
from streamrec.ops.history_table import clear_table
from streamrec.ops.redrive import redrive


def wipe_patterns(keys: RedisKeys) -> tuple[str, ...]:
    """SCAN patterns of the derived keys a rebuild wipes (``RedisKeys.derived_patterns``:
    the worker's own rebuild of a stale Redis wipes the same)."""
    return keys.derived_patterns()


#: 9999-12-31T23:59:59Z: the last instant an ISO time can name.
MAX_TIME = 253402300799.0
#: The fastest ``--speed N`` (faster than the producer anyway: ``max`` says it plainly).
MAX_SPEED = 1_000_000.0
#: A topic name Kafka accepts (``--to-topic``): 1-249 ASCII letters, digits, ``._-``.
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def parse_time(value: str) -> float:
    """Epoch seconds from ``"1511658000"`` or an ISO-8601 string (naive = UTC);
    ValueError naming the problem for anything else or a time outside 1970..9999."""
    try:
        ts = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is neither epoch seconds nor ISO-8601 "
                             "(e.g. 2017-11-26T01:00:00Z)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ts = when.timestamp()
    if not math.isfinite(ts) or not 0 <= ts <= MAX_TIME:
        raise ValueError(f"{value!r} is not a time between 1970 and the year 9999")
    return ts


def parse_speed(value: str | None) -> float | None:
    """``--speed``: None (as fast as possible) for ``max`` or nothing, else N > 0."""
    if value is None or value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = math.nan
    if not math.isfinite(speed) or not 0 < speed <= MAX_SPEED:
        raise ValueError(f"--speed {value!r}: give max or a number N with 0 < N <= "
                         f"{MAX_SPEED:,.0f} (N x real time)")
    return speed


def wipe_derived(settings: Settings, keys: RedisKeys | None = None) -> int:
    """Delete the derived keys (see :func:`wipe_patterns`); returns how many."""
    from core.redis_client import sync_client, unlink_matching

    keys = keys or RedisKeys()
    client = sync_client(settings)
    try:
        return sum(unlink_matching(client, pattern) for pattern in wipe_patterns(keys))
    finally:
        client.close()


def mark_forwarded(settings: Settings, keys: RedisKeys | None = None) -> dict[int, int]:
    """Record, before the group is reset, how far the stopped workers had applied the
    events topic: the forwards of identified anonymous histories of every message below
    that are on the log already, so the reprocessing worker does not send them again
    (``RedisKeys.forwarded``); returns the marks. An offset beyond its partition's end
    is of another log (a Tansu restarted empty): no mark.

    A mark an earlier replay left (its worker stopped before reprocessing past it, e.g.
    by this replay) is kept when higher: that worker's applied offsets restarted from
    the replay's start, so they understate which forwards the log holds."""
    from core.kafka_tools import high_watermarks
    from core.redis_client import sync_client

    keys = keys or RedisKeys()
    ends = high_watermarks(settings, settings.topic_events)
    client = sync_client(settings)
    try:
        marks: dict[int, int] = {}
        for source in (keys.forwarded, keys.applied(settings.topic_events)):
            for p, o in client.hgetall(source).items():
                if int(o) <= ends.get(int(p), -1):
                    marks[int(p)] = max(marks.get(int(p), 0), int(o))
        client.delete(keys.forwarded)
        if marks:
            client.hset(keys.forwarded, mapping=marks)
        return marks
    finally:
        client.close()


def record_replay_ends(settings: Settings, ends: dict[int, int]) -> None:
    """Store the events topic's end offsets at the reset (``replay:ends``, replacing the
    last replay's: one field per partition)."""
    from core.ops_records import replay_ends_fields
    from core.redis_client import sync_client

    key = RedisKeys().replay_ends
    client = sync_client(settings)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.delete(key)
        if ends:
            pipe.hset(key, mapping=replay_ends_fields(ends))
        pipe.execute()
    finally:
        client.close()


def live_workers(settings: Settings, max_age_s: float = 6.0) -> list[str]:
    """Ids of workers whose heartbeat is fresh."""
    from streamrec.stack.embedded import worker_heartbeats

    now = time.time()
    return [wid for wid, beat in worker_heartbeats(settings.redis_url).items()
            if now - float(beat.get("heartbeat_at") or 0) < max_age_s]


def rebuild(settings: Settings, *, from_ts: float | None, keep_state: bool,
            echo: Any = print, wait: bool = True) -> dict[str, Any]:
    """Steps 1–6 of the module doc (and, with ``wait``, the restarted embedded worker's
    reprocessing followed to the log's end as a progress bar); returns what was done.

    Steps 1–5 hold the rebuild lock (``stream.rebuild.rebuild_lock_held``), taken before
    anything stops: a worker rebuilding after a flush, or ``streamrec rebuild``, makes
    this a :class:`ReplayError` with nothing changed (the wipe removed part of what that
    rebuild wrote, and it then marked Redis whole). Released before the worker restarts."""
    from core.kafka_tools import high_watermarks
    from stream.rebuild import RebuildBusy, rebuild_lock_held
    from streamrec.stack import embedded as stack

    try:
        with rebuild_lock_held(settings):
            report = _stop_reset_wipe(settings, from_ts=from_ts, keep_state=keep_state,
                                      echo=echo)
    except RebuildBusy as exc:
        raise ReplayError(f"{exc} (a worker after a flush, or `streamrec rebuild`): it "
                          "ends with the same state; `streamrec status` shows when (retry "
                          "once it is done if you still want to)") from None
    offsets = report["offsets"]
    if not report["stopped_worker"]:
        echo("start the workers: they reprocess from there (`streamrec status` shows the lag)")
        return report
    echo("restarting the worker")
    stack.up(settings, echo=lambda _m: None)
    if wait:
        ends = high_watermarks(settings, settings.topic_events)
        report["caught_up"] = follow_group(settings, settings.topic_events, offsets, ends)
        if not report["caught_up"]:
            raise ReplayError("the worker made no progress for 5 minutes; see "
                              "`streamrec status` and its log under .streamrec/logs")
        echo(f"reprocessed {sum(ends.values()) - sum(offsets.values())} messages")
    return report


def _stop_reset_wipe(settings: Settings, *, from_ts: float | None, keep_state: bool,
                     echo: Any) -> dict[str, Any]:
    """Steps 1–5 of the module doc (the caller holds the rebuild lock)."""
    from core.kafka_tools import high_watermarks
    from streamrec.stack import embedded as stack
    from streamrec.stack.plan import stop
    from streamrec.stack.records import members

    state = stack.load_state(settings)
    stopped = False
    for worker_rec in members(state.processes, "worker") if state else []:
        if worker_rec.is_ours():
            echo(f"stopping the embedded {worker_rec.label} (pid {worker_rec.pid})")
            stop(worker_rec)
            stopped = True
    if stopped:
        time.sleep(0.5)
    running = live_workers(settings)
    if running and not stopped:
        raise ReplayError(f"workers are running ({', '.join(running)}); stop them first")
    # A heartbeat of the worker just stopped may still look fresh: they expire by TTL.
    report: dict[str, Any] = {"stopped_worker": stopped}
    from stream.forget import restore_sync

    report["forgotten_restored"] = restore_sync(settings)
    mark_forwarded(settings)
    ends = high_watermarks(settings, settings.topic_events)
    if from_ts is None:
        offsets = dict.fromkeys(ends, 0)
    else:
        offsets = offsets_for_time(settings, settings.topic_events, from_ts)
    record_replay_ends(settings, ends)
    # The offsets move before the wipe: a replay interrupted (Ctrl-C) after the wipe
    # left the group at the log's end, and the worker `streamrec up` restarted never
    # refilled the wiped Redis. Now any stop leaves a worker that reprocesses from here.
    commit_group_offsets(settings, settings.topic_events, offsets)
    report["offsets"] = offsets
    echo(f"group {settings.app_id} on {settings.topic_events} reset to {offsets}")
    if not keep_state:
        report["redis_keys_deleted"] = wipe_derived(settings)
        report["table_keys_cleared"] = clear_table(settings)
        cleared = report["table_keys_cleared"]
        echo(f"wiped {report['redis_keys_deleted']} Redis keys, "
             + ("deleted the history changelog" if cleared is None
                else f"cleared {cleared} history entries"))
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec replay``."""
    parser.add_argument("--rebuild", action="store_true",
                        help="wipe derived state and reprocess events from offset 0 "
                             "(or --from-time)")
    parser.add_argument("--keep-state", action="store_true",
                        help="with --rebuild: only move the group's offsets, wipe nothing")
    parser.add_argument("--no-wait", action="store_true",
                        help="with --rebuild: return once the embedded worker restarted, "
                             "without following its reprocessing (progress bar, ETA)")
    parser.add_argument("--from-time", default=None,
                        help="epoch seconds or ISO-8601 (naive = UTC)")
    parser.add_argument("--to-time", default=None,
                        help="end of the range to re-drive (epoch seconds or ISO-8601)")
    parser.add_argument("--speed", default=None,
                        help="re-drive pace: N (× real time, 0 < N <= 1000000) or max "
                             "(default: max)")
    parser.add_argument("--to-topic", default=None,
                        help="re-drive into another topic (default: the events topic; not "
                             "streamrec's catalog, dead-letter, forgotten or changelog topic)")


def _usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, or None."""
    if args.rebuild:
        extra = [o for o, v in (("--to-time", args.to_time), ("--speed", args.speed),
                                ("--to-topic", args.to_topic)) if v is not None]
        if extra:
            return (f"{', '.join(extra)}: only for a re-drive (--from-time A --to-time B); "
                    "--rebuild reprocesses the log "
                    "from offset 0 or --from-time: give one or the other")
        return None
    if args.keep_state or args.no_wait:
        return f"{'--keep-state' if args.keep_state else '--no-wait'} goes with --rebuild"
    if args.from_time is None or args.to_time is None:
        return "give --rebuild, or --from-time and --to-time"
    if args.to_topic is not None and (not TOPIC_NAME.fullmatch(args.to_topic)
                                      or args.to_topic in (".", "..")):
        return (f"--to-topic {args.to_topic!r}: not a Kafka topic name (1-249 ASCII "
                "letters, digits, '.', '_' and '-')")
    return None


def _not_for_events(settings: Settings, topic: str) -> str | None:
    """Which of streamrec's other topics ``topic`` is (catalog, dead-letter, forgotten,
    history changelog), or None: tracking events re-driven there would be dead-lettered
    or skipped as malformed, or would corrupt the history table."""
    from core.topics import changelog_topic

    own = {settings.topic_catalog: "catalog", settings.topic_dlq: "dead-letter",
           settings.topic_forgotten: "forgotten", changelog_topic(settings): "history changelog"}
    return own.get(topic)


def run(args: argparse.Namespace) -> int:
    """Dispatch to rebuild or re-drive; exit code 2 for options that cannot run, 1 when
    the replay could not."""
    from core.settings import get_settings

    problem = _usage(args)
    try:
        start = parse_time(args.from_time) if args.from_time is not None else None
        end = parse_time(args.to_time) if args.to_time is not None else None
        speed = parse_speed(args.speed)
    except ValueError as exc:
        problem = problem or str(exc)
    else:
        if problem is None and start is not None and end is not None and end <= start:
            problem = f"--to-time {args.to_time} is not after --from-time {args.from_time}"
    if problem is not None:
        print(f"streamrec replay: {problem}", file=sys.stderr)
        return 2
    settings = get_settings()
    if args.to_topic is not None and (own := _not_for_events(settings, args.to_topic)):
        print(f"streamrec replay: --to-topic {args.to_topic!r} is streamrec's {own} topic: "
              "a re-drive writes tracking events, which only the events topic (or a "
              "topic of your own) takes", file=sys.stderr)
        return 2
    from core.net import bootstrap_reachable

    if not bootstrap_reachable(settings.kafka_bootstrap):
        print(f"streamrec replay: cannot reach Kafka at {settings.kafka_bootstrap}: run "
              "`streamrec up`, or set STREAMREC_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 1
    try:
        if args.rebuild:
            rebuild(settings, from_ts=start, keep_state=args.keep_state,
                    wait=not args.no_wait)
            return 0
        assert start is not None and end is not None
        n = redrive(settings, start, end, speed=speed, target_topic=args.to_topic)
        print(f"re-drove {n} messages")
        return 0
    except ReplayError as exc:
        print(f"streamrec replay: {exc}", file=sys.stderr)
        return 1
