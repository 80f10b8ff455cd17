"""Experiment definitions in Redis, and their reports (docs/experiments.md).

Definitions live in one hash (``RedisKeys.experiments``: id → JSON); every write counts
up ``RedisKeys.experiments_rev`` after it, which every answer reads to tell its API
process that its copy is behind (:mod:`api.experiments`). The JSON holds
what the admin sent plus ``created_at``, ``started_at``, ``stopped_at`` (epoch seconds)
and ``run``, a random token made at creation: exposure records carry it, so a deleted
experiment's records still in the log never count for a new one of the same id.

Rules of a ``PUT`` on an existing experiment (each breach is a 422 saying why):
variants (names, weights, serving) are fixed once an entity is enrolled — the report
would mix two designs —, and a stopped experiment with enrolled entities cannot run
again (outcomes after ``stopped_at`` are not counted, so a replay could not reproduce a
gap). Contexts and status may change otherwise.

Reports read the worker's counters (``stream.experiments``) and compute the figures
with :mod:`recommender.experiments`; :func:`dashboard_reports` is the hook for dashboards.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from redis.asyncio import Redis

from api.errors import ValidationFailed
from core.limits import MAX_EXPERIMENTS
from core.redis_keys import RedisKeys
from recommender.experiments import build_report
from schemas import Experiment, ExperimentSpec

#: Stored fields that are not part of the public ``Experiment``.
INTERNAL = ("run",)


def public(stored: Mapping[str, Any]) -> Experiment:
    """The API form of a stored definition."""
    return Experiment.model_validate({k: v for k, v in stored.items() if k not in INTERNAL})


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(message, detail=[{"loc": ["body"], "msg": message,
                                              "type": "value_error"}])


def _next_definition(experiment_id: str, spec: ExperimentSpec, old: Mapping[str, Any] | None,
                     *, enrolled: bool, now: float) -> dict[str, Any]:
    """The definition after a PUT of ``spec`` over ``old`` (see the module rules)."""
    body = spec.model_dump(mode="json")
    running = spec.status == "running"
    if old is None:
        return {"experiment_id": experiment_id, **body, "created_at": now,
                "started_at": now if running else None, "stopped_at": None,
                "run": secrets.token_hex(8)}
    if enrolled and body["variants"] != old["variants"]:
        raise _refuse("the variants of an experiment with enrolled entities cannot change "
                      "(its report would mix two designs); create a new experiment id, or "
                      "DELETE this one first")
    started_at, stopped_at = old.get("started_at"), old.get("stopped_at")
    if running and stopped_at is not None:
        if enrolled:
            raise _refuse("a stopped experiment with enrolled entities cannot run again "
                          "(outcomes after it stopped are not counted); create a new "
                          "experiment id")
        stopped_at = None
    if running and started_at is None:
        started_at = now
    if not running and old.get("status") == "running":
        stopped_at = now
    return {**old, **body, "started_at": started_at, "stopped_at": stopped_at}


def parse_counts(raw: Mapping[Any, Any]) -> dict[str, dict[str, float]]:
    """``{variant: {metric: value}}`` from the counters hash (fields ``variant|metric``)."""
    counts: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        variant, sep, metric = name.rpartition("|")
        if not sep:
            continue
        try:
            number = float(value.decode() if isinstance(value, bytes) else value)
        except ValueError:
            continue
        counts.setdefault(variant, {})[metric] = number
    return counts


class ExperimentStore:
    """CRUD of definitions and reports, over the API's Redis client."""

    def __init__(self, redis: Redis, keys: RedisKeys | None = None) -> None:
        self.redis = redis
        self.keys = keys or RedisKeys()

    async def raw_all(self) -> dict[str, dict[str, Any]]:
        """Every stored definition by id (unparseable entries are skipped)."""
        raw = await self.redis.hgetall(self.keys.experiments)
        out: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out[key.decode() if isinstance(key, bytes) else str(key)] = doc
        return out

    async def raw(self, experiment_id: str) -> dict[str, Any] | None:
        """One stored definition, or None."""
        value = await self.redis.hget(self.keys.experiments, experiment_id)
        if value is None:
            return None
        doc = orjson.loads(value)
        return doc if isinstance(doc, dict) else None

    async def enrolled(self, experiment_id: str) -> bool:
        """Whether any entity is enrolled (assigned) in the experiment."""
        return bool(await self.redis.hlen(self.keys.experiment_assign(experiment_id)))

    async def put(self, experiment_id: str, spec: ExperimentSpec, now: float
                  ) -> dict[str, Any]:
        """Create or update; the stored definition. ``ValidationFailed`` when the module
        rules or :data:`core.limits.MAX_EXPERIMENTS` refuse it."""
        old = await self.raw(experiment_id)
        if old is None and await self.redis.hlen(self.keys.experiments) >= MAX_EXPERIMENTS:
            raise _refuse(f"at most {MAX_EXPERIMENTS} experiments can be defined; DELETE "
                          "finished ones first")
        enrolled = old is not None and await self.enrolled(experiment_id)
        doc = _next_definition(experiment_id, spec, old, enrolled=enrolled, now=now)
        if old is None:
            # A new run starts empty: assignments another API process recorded for a
            # deleted run of this id in the second before it saw the deletion would
            # otherwise pass for this run's (no exposure, missing from its report).
            await self._wipe(experiment_id)
        await self.redis.hset(self.keys.experiments, experiment_id, orjson.dumps(doc))
        await self.redis.incr(self.keys.experiments_rev)  # after the write it announces
        return doc

    async def delete(self, experiment_id: str) -> bool:
        """Remove the definition, then its assignments and outcome counters (the worker
        stops counting for a definition that is gone, so nothing is recreated)."""
        if not await self.redis.hdel(self.keys.experiments, experiment_id):
            return False
        await self.redis.incr(self.keys.experiments_rev)
        await self._wipe(experiment_id)
        return True

    async def _wipe(self, experiment_id: str) -> None:
        """Delete an experiment's assignments and outcome counters."""
        await self.redis.delete(self.keys.experiment_assign(experiment_id))
        batch: list[Any] = []
        async for key in self.redis.scan_iter(
                match=self.keys.experiment_outcomes_pattern(experiment_id), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await self.redis.unlink(*batch)
                batch = []
        if batch:
            await self.redis.unlink(*batch)

    async def report(self, experiment_id: str) -> dict[str, Any] | None:
        """The report of API.md (plus ``status``), or None for an unknown experiment."""
        doc = await self.raw(experiment_id)
        if doc is None:
            return None
        raw = await self.redis.hgetall(self.keys.experiment_counts(experiment_id))
        return report_of(doc, parse_counts(raw))


def report_of(doc: Mapping[str, Any], counts: Mapping[str, Mapping[str, float]]
              ) -> dict[str, Any]:
    """A definition's report from its parsed counters."""
    variants = [(str(v["name"]), float(v["weight"])) for v in doc["variants"]]
    report = build_report(str(doc["experiment_id"]), variants, counts)
    return {**report, "status": doc.get("status", "running")}


async def dashboard_reports(redis: Redis, keys: RedisKeys | None = None
                            ) -> list[dict[str, Any]]:
    """The report of every defined experiment (at most :data:`MAX_EXPERIMENTS`): the
    running ones by id, then the stopped ones by id -- a merchant looks for a finished
    experiment's outcome as much as for a live one's. The dashboard's hook; one round
    trip for all the counters."""
    keys = keys or RedisKeys()
    docs = await ExperimentStore(redis, keys).raw_all()
    order = sorted(docs, key=lambda eid: (docs[eid].get("status") != "running", eid))
    pipe = redis.pipeline(transaction=False)
    for experiment_id in order:
        pipe.hgetall(keys.experiment_counts(experiment_id))
    counts = await pipe.execute() if order else []
    return [report_of(docs[eid], parse_counts(raw)) for eid, raw in zip(order, counts,
                                                                         strict=True)]
