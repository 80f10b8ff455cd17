"""Full retrain: read ``events`` from offset 0, train ALS, publish a new model version.

Runs on the worker's timer as a niced process of its own (:mod:`stream.trainer`) and on
demand from ``streamrec train``. Publishing writes every item's similar list, stores the
item factors, then flips ``model:current`` with one SET so readers switch atomically;
workers notice within two seconds and hot-swap their factors. Only then are plain lists
written for the users that have none yet (the workers' blends are never overwritten).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import redis

from core.gc_tuning import paused
from core.ops_records import MODEL_HISTORY_KEPT, model_history_entry
from core.redis_client import sync_client, text
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.als import train_als
from recommender.idmap import IdMap
from recommender.interactions import Interactions, build_matrix_from_rows
from recommender.topn import recommend_batch, similar_items
from stream.applied import release_lock_sync
from stream.forget import forgotten_since
from stream.live_model import factors_to_bytes
from stream.redis_writer import dumps_list, dumps_list_block
from stream.retrain_read import iter_topic_events
from stream.row_lists import encode_row_block, encode_rows

log = logging.getLogger("streamrec.retrain")

#: Lists written per Redis pipeline round trip.
WRITE_CHUNK = 2000
LOCK_TTL_S = 3600

#: ``progress(stage, done, total)`` of a retrain: ``"wait for retrain"`` (seconds waited of
#: ``busy_wait_s`` while another retrain holds the lock), ``"read"`` (messages of the log
#: read, of its end offsets summed), ``"fit"`` (ALS iterations done), ``"similar"`` (item
#: lists written), ``"user lists"`` (plain lists written for users without one), then
#: ``"live"`` (workers serving the new version, of those running).
Progress = Callable[[str, int, int], None]


class NotEnoughData(RuntimeError):
    """Too few events to train a meaningful model."""


class RetrainBusy(RuntimeError):
    """Another retrain holds the lock."""


@dataclass
class RetrainResult:
    """What a retrain produced. ``seconds``: from the start until the version is live
    (the swap); ``stages``: seconds per stage (``read`` the log into the matrix, ``fit``
    ALS, ``similar`` lists computed and written, ``swap``, then ``user_lists``: plain
    lists for the ``user_lists`` users that had none, written after the swap)."""

    version: str
    n_users: int
    n_items: int
    n_events: int
    seconds: float
    live: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    user_lists: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def new_version() -> str:
    """A sortable, unique version name."""
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:4]


def _redis(settings: Settings) -> redis.Redis:
    # bytes replies (decode_responses off): the checks below compare bytes.
    return sync_client(settings)


def train_and_publish(settings: Settings, *, wait_live_s: float = 30.0,
                      keys: RedisKeys | None = None, threads: int = 1,
                      write_user_lists: bool = True, busy_wait_s: float = 0.0,
                      progress: Progress | None = None) -> RetrainResult:
    """Train on the whole log and make the result live; returns once it is published
    (and, if workers run, once they all serve it or ``wait_live_s`` passed). ``threads``:
    ALS solver threads (0 = every core: the worker's niced retrain process).
    ``write_user_lists``: after the swap, write plain lists for trained users without one
    (``streamrec bench train`` skips them: they come after the version is live).
    ``busy_wait_s``: while another retrain holds the lock, wait this long for it to end
    and then train (``streamrec train``: the log may have grown since that one read it);
    :class:`RetrainBusy` when it still holds it (at once with 0, the worker's timer).
    ``progress``: told how each stage goes (``streamrec train``'s bars)."""
    keys = keys or RedisKeys()
    client = _redis(settings)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + busy_wait_s
    while not client.set(keys.train_lock, holder, nx=True, ex=LOCK_TTL_S):
        if time.monotonic() >= deadline:
            client.close()
            raise RetrainBusy("another retrain is running")
        if progress is not None and busy_wait_s >= 1:
            waited = busy_wait_s - (deadline - time.monotonic())
            total = int(busy_wait_s)
            progress("wait for retrain", max(0, min(int(waited), total - 1)), total)
        time.sleep(0.5)
    try:
        result = _train_and_publish(settings, client, keys, threads, write_user_lists,
                                    progress)
    finally:
        release_lock_sync(client, keys.train_lock, holder)
    result.live = wait_until_live(client, keys, result.version, timeout_s=wait_live_s,
                                  progress=_stage(progress, "live"))
    client.close()
    return result


def _train_and_publish(settings: Settings, client: redis.Redis, keys: RedisKeys,
                       threads: int, write_user_lists: bool = True,
                       progress: Progress | None = None) -> RetrainResult:
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(name: str) -> None:
        stages[name] = round(time.perf_counter() - started - sum(stages.values()), 3)

    read_at = time.time()  # ids forgotten from now on may be in what is read: not listed
    # The end offsets read up to: the worker's growth trigger compares the log's later
    # end offsets with these (recommender.retrain_policy), not processed counts.
    ends: dict[int, int] = {}
    cores = threads or os.cpu_count() or 1
    read_progress = _stage(progress, "read")
    fit_progress = _fit_report(progress, settings.als_iterations)
    with paused():
        data = build_matrix_from_rows(iter_topic_events(settings, ends=ends, processes=cores,
                                                        progress=read_progress),
                                      max_links=settings.identify_max_links)
    if settings.require_catalog:
        data = catalog_only(client, keys, data)
    if data.n_events < settings.retrain_min_events or data.matrix.nnz == 0:
        raise NotEnoughData(
            f"{data.n_events} usable events on {settings.topic_events}; "
            f"need at least {settings.retrain_min_events} (STREAMREC_RETRAIN_MIN_EVENTS)"
        )
    stage("read")
    log.info("training ALS on %d users x %d items (%d events)", data.matrix.shape[0],
             data.matrix.shape[1], data.n_events)
    factors = min(settings.als_factors, max(2, min(data.matrix.shape) - 1))
    if fit_progress is not None:
        fit_progress(0)  # a bar from the start: one iteration of a large log takes a while
    model = train_als(data.matrix, factors=factors, iterations=settings.als_iterations,
                      cg_steps=settings.als_cg_steps,
                      regularization=settings.als_regularization, alpha=settings.als_alpha,
                      random_state=settings.als_seed, num_threads=threads,
                      on_iteration=fit_progress)
    stage("fit")
    version = new_version()
    item_ids = data.item_map.ids
    user_ids = data.user_map.ids
    n = min(settings.list_size, len(item_ids) - 1)
    if n > 0:
        sim_idx, sim_scores = similar_items(model.item_factors, n=n, threads=cores)
        # stamped like the user lists: an explain trace gives the source its age
        _write_lists(client, [keys.item_similar(i) for i in item_ids], item_ids, sim_idx,
                     sim_scores, version, ts=time.time(),
                     rows_key=keys.model_similar_rows(version),
                     progress=_stage(progress, "similar"))
    stage("similar")
    meta = {"trained_at": repr(time.time()), "n_users": len(user_ids),
            "n_items": len(item_ids), "n_events": data.n_events, "factors": factors,
            "log_ends": orjson.dumps({str(p): end for p, end in sorted(ends.items())}),
            "regularization": repr(settings.als_regularization),
            "alpha": repr(settings.als_alpha)}
    _swap(client, keys, version, item_ids, model.item_factors, meta)
    stage("swap")
    seconds = time.perf_counter() - started
    pipe = client.pipeline(transaction=False)
    pipe.lpush(keys.model_history, model_history_entry(version, {
        "trained_at": round(time.time(), 3), "n_users": len(user_ids),
        "n_items": len(item_ids), "n_events": data.n_events, "factors": factors,
        "seconds": round(seconds, 2)}))
    pipe.ltrim(keys.model_history, 0, MODEL_HISTORY_KEPT - 1)
    pipe.execute()
    log.info("model %s live: %d users, %d items, %.1fs", version, len(user_ids), len(item_ids),
             seconds)
    written = 0
    if n > 0 and write_user_lists:
        written = _first_user_lists(client, keys, settings, user_ids, item_ids, model,
                                    data.matrix, n=n, version=version, threads=cores,
                                    read_at=read_at, progress=_stage(progress, "user lists"))
    stage("user_lists")
    return RetrainResult(version, len(user_ids), len(item_ids), data.n_events, seconds,
                         stages=stages, user_lists=written)


def _fit_report(progress: Progress | None, iterations: int
                ) -> Callable[[int], None] | None:
    """``progress`` as the fit's ``(iterations done)`` report of ``iterations`` (None
    without one)."""
    fit = _stage(progress, "fit")
    if fit is None:
        return None
    return lambda done: fit(done, iterations)


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    """``progress`` as one stage's ``(done, total)`` report (None without one)."""
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(name, done, total)


def catalog_only(client: redis.Redis, keys: RedisKeys, data: Interactions) -> Interactions:
    """``data`` without the items the catalog lacks (``require_catalog``), and without the
    entities left with no item.

    The worker keeps no per-item state of unknown items, but the retrain reads the whole
    log: without this, every random item id a client ever sent got a model row, factors
    and an ``i:{item}:similar`` list without TTL (~5 KB each: 10,000 forged events grew
    Redis by 33 MB at the next retrain). Presence is the worker's gate: the item's meta key.
    """
    ids = data.item_map.ids
    known = np.zeros(len(ids), dtype=bool)
    for start in range(0, len(ids), WRITE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for item in ids[start:start + WRITE_CHUNK]:
            pipe.exists(keys.item_meta(item))
        known[start:start + WRITE_CHUNK] = [bool(n) for n in pipe.execute()]
    if known.all():
        return data
    col_keep = np.flatnonzero(known)
    matrix = data.matrix[:, col_keep].tocsr()
    row_keep = np.flatnonzero(np.diff(matrix.indptr) > 0)
    log.info("retrain: %d of %d items are not in the catalog; left out", len(ids) - len(col_keep),
             len(ids))
    return Interactions(matrix=matrix[row_keep], user_map=IdMap(data.user_map.ids_of(row_keep)),
                        item_map=IdMap(data.item_map.ids_of(col_keep)), n_events=data.n_events)


def _swap(client: redis.Redis, keys: RedisKeys, version: str, item_ids: list[str],
          item_factors: np.ndarray, meta: dict[Any, Any]) -> None:
    """Store the version's item ids, factors and facts, then make it live with one SET
    (the previous version's artefacts go)."""
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.model_item_ids(version), orjson.dumps(item_ids))
    pipe.set(keys.model_item_factors(version), factors_to_bytes(item_factors))
    pipe.hset(keys.model_meta(version), mapping=meta)
    pipe.execute()
    previous = text(client.get(keys.model_current))
    client.set(keys.model_current, version)
    if previous and previous != version:
        _drop_version(client, keys, previous)


def _first_user_lists(client: redis.Redis, keys: RedisKeys, settings: Settings,
                      user_ids: list[str], item_ids: list[str], model: Any,
                      matrix: Any, *, n: int, version: str, threads: int,
                      read_at: float,
                      progress: Callable[[int, int], None] | None = None) -> int:
    """Plain ALS lists for the trained users that have no stored list at all (after the
    first model, before their next event), except those forgotten since the log was read
    at ``read_at`` (``stream.forget``); how many.

    Written after the swap, and never over a list: the workers' lists are blends (fold-in
    with session, similar, trending and popular candidates) and their refresh sweep moves
    the recently active ones to the new model. Scoring every user of a 1M-event log
    (100,000) took longer than fitting the model; usually few users have no list."""
    missing: list[int] = []
    for start in range(0, len(user_ids), WRITE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for user in user_ids[start:start + WRITE_CHUNK]:
            pipe.exists(keys.user_recs(user))
        missing += [start + i for i, found in enumerate(pipe.execute()) if not found]
    gone = forgotten_since(client, keys, [user_ids[r] for r in missing], read_at)
    missing = [r for r in missing if user_ids[r] not in gone]
    if not missing:
        return 0
    rows = np.asarray(missing, dtype=np.int64)
    idx, scores = recommend_batch(model.user_factors[rows], model.item_factors, n=n,
                                  exclude_rows=matrix[rows], threads=threads)
    _write_lists(client, [keys.user_recs(user_ids[r]) for r in missing], item_ids, idx,
                 scores, version, ts=time.time(), only_new_ms=1000 * settings.entity_ttl_s,
                 progress=progress)
    return len(missing)


def _write_lists(client: redis.Redis, redis_keys: list[str], item_ids: list[str],
                 idx: np.ndarray, scores: np.ndarray, version: str,
                 ts: float | None = None, rows_key: str | None = None,
                 only_new_ms: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
    """Write row ``r``'s list as JSON to ``redis_keys[r]``, in bounded pipelines; with
    ``rows_key`` (item lists only: row ``r`` is item ``item_ids[r]``) also as model rows
    into that hash, for the worker (``stream.row_lists``), one HSET per pipeline. With
    ``only_new_ms``, a key is written only where none exists, expiring after that long.
    ``progress(written, total)`` after each pipeline."""
    id_array = np.asarray(item_ids, dtype=object)  # rows → ids without a loop per item
    for start in range(0, len(redis_keys), WRITE_CHUNK):
        stop = min(start + WRITE_CHUNK, len(redis_keys))
        pipe = client.pipeline(transaction=False)
        binary: dict[Any, bytes] = {}  # Any: redis-py's key type is a union
        full = (idx[start:stop] >= 0).all(axis=1)
        whole = np.flatnonzero(full) + start  # padded rows (few neighbours) one by one
        bodies = dict(zip(whole.tolist(), dumps_list_block(
            version, id_array[idx[whole]].tolist(), scores[whole], ts=ts), strict=True))
        if rows_key is not None:
            binary = {item_ids[row]: raw for row, raw in zip(
                whole.tolist(), encode_row_block(idx[whole], scores[whole]), strict=True)}
        for row in range(start, stop):
            body = bodies.get(row)
            if body is None:
                valid = idx[row] >= 0
                body = dumps_list(version, id_array[idx[row][valid]].tolist(),
                                  scores[row][valid], ts=ts)
                if rows_key is not None:
                    binary[item_ids[row]] = encode_rows(idx[row][valid], scores[row][valid])
            if only_new_ms is None:
                pipe.set(redis_keys[row], body)
            else:
                pipe.set(redis_keys[row], body, nx=True, px=only_new_ms)
        if binary and rows_key is not None:
            pipe.hset(rows_key, mapping=binary)
        pipe.execute()
        if progress is not None:
            progress(stop, len(redis_keys))


def _drop_version(client: redis.Redis, keys: RedisKeys, version: str) -> None:
    """Delete the artefacts of a superseded version (readers use model:current)."""
    # UNLINK: frees off Redis's main thread (the neighbour-list hash holds one field per
    # item); readers see the keys gone at once, as with DEL.
    client.unlink(keys.model_item_ids(version), keys.model_item_factors(version),
                  keys.model_meta(version), keys.model_similar_rows(version))


def wait_until_live(client: redis.Redis, keys: RedisKeys, version: str, *,
                    timeout_s: float,
                    progress: Callable[[int, int], None] | None = None) -> bool:
    """True once every worker with a heartbeat reports ``version`` (or none run);
    ``progress(serving, running)`` after each look."""
    deadline = time.monotonic() + timeout_s
    while True:
        versions = [
            client.hget(k, "model_version") for k in client.scan_iter(keys.worker_pattern)
        ]
        serving = sum(text(v) == version for v in versions)
        if progress is not None and versions:
            progress(serving, len(versions))
        if serving == len(versions):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
