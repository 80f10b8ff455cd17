"""Experiments (admin key): define, list, stop, delete, and report (API.md "Experiments",
docs/experiments.md). Definitions are stored by :mod:`api.experiment_store`; serving
applies them through :mod:`api.experiments`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response
from redis.exceptions import RedisError

from api.auth import Role
from api.body import json_body_openapi, parse_model, read_json
from api.deps import ExperimentsDep, require
from api.errors import RedisUnavailable, ValidationFailed
from api.experiment_store import public
from api.routes.common import error_responses
from core.limits import EXPERIMENT_NAME_RE, MAX_EXPERIMENT_NAME_LEN
from schemas import Experiment, ExperimentList, ExperimentReport, ExperimentSpec

router = APIRouter(
    tags=["experiments"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 422, 429, 503),
)

ExperimentIdPath = Annotated[
    str,
    Path(pattern=EXPERIMENT_NAME_RE, max_length=MAX_EXPERIMENT_NAME_LEN,
         description=f"letters, digits, `_` and `-`, at most {MAX_EXPERIMENT_NAME_LEN}",
         examples=["recs-vs-holdout"]),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No experiment with this id"}}


@asynccontextmanager
async def _redis_errors() -> AsyncIterator[None]:
    """Redis failures become a 503 with ``Retry-After`` (never a 500)."""
    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(exc) from exc


def _spec(payload: Any) -> ExperimentSpec:
    """The PUT body, or a 422 whose message names the first problem."""
    try:
        return parse_model(ExperimentSpec, payload)
    except ValidationFailed as exc:
        first = (exc.detail or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise ValidationFailed(f"invalid experiment: {where + ': ' if where else ''}{message}",
                               detail=exc.detail) from exc


def _not_found(experiment_id: str) -> HTTPException:
    return HTTPException(404, f"no experiment {experiment_id!r}")


# The id routes take any characters (``:id``, api.routes.common), so an id with "/"
# (sent as %2F, which arrives decoded) gets the id rule's 422 instead of a bare 404. The
# report's route comes first: ".../x/report" is the report of x, not the id "x/report".
@router.get("/v1/admin/experiments/{experiment_id:id}/report", response_model=ExperimentReport,
            responses=_NOT_FOUND)
async def experiment_report(experiment_id: ExperimentIdPath,
                            experiments: ExperimentsDep) -> Response:
    """Per variant: entities, impressions, clicks, add-to-carts, purchases, purchasers,
    revenue, conversion and revenue per entity; lift over the control with 95 % intervals;
    and the sample-ratio-mismatch p-value."""
    async with _redis_errors():
        report = await experiments.store.report(experiment_id)
    if report is None:
        raise _not_found(experiment_id)
    return Response(orjson.dumps(report), media_type="application/json")


@router.put(
    "/v1/admin/experiments/{experiment_id:id}",
    response_model=Experiment,
    responses=error_responses(413, 415),
    openapi_extra=json_body_openapi("ExperimentSpec", example={
        "variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                     {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
        "contexts": ["home"], "status": "running"}),
)
async def put_experiment(experiment_id: ExperimentIdPath, request: Request,
                         experiments: ExperimentsDep) -> Experiment:
    """Create or change an experiment (`"status": "stopped"` ends it); the stored one."""
    spec = _spec(await read_json(request))
    async with _redis_errors():
        doc = await experiments.store.put(experiment_id, spec, time.time())
    experiments.changed(experiment_id, doc)
    return public(doc)


@router.get("/v1/admin/experiments", response_model=ExperimentList)
async def list_experiments(experiments: ExperimentsDep) -> ExperimentList:
    """Every defined experiment, by id."""
    async with _redis_errors():
        docs = await experiments.store.raw_all()
    return ExperimentList(experiments=[public(docs[i]) for i in sorted(docs)])


@router.get("/v1/admin/experiments/{experiment_id:id}", response_model=Experiment,
            responses=_NOT_FOUND)
async def get_experiment(experiment_id: ExperimentIdPath,
                         experiments: ExperimentsDep) -> Experiment:
    """One experiment."""
    async with _redis_errors():
        doc = await experiments.store.raw(experiment_id)
    if doc is None:
        raise _not_found(experiment_id)
    return public(doc)


@router.delete("/v1/admin/experiments/{experiment_id:id}", status_code=204,
               response_class=Response, responses=_NOT_FOUND)
async def delete_experiment(experiment_id: ExperimentIdPath,
                            experiments: ExperimentsDep) -> Response:
    """Delete an experiment with its assignments and outcome counters."""
    # Stop serving it first: an answer racing the deletion must not record an
    # assignment after its hash was deleted. (Not found: nothing was served anyway.)
    experiments.changed(experiment_id, None)
    async with _redis_errors():
        found = await experiments.store.delete(experiment_id)
    if not found:
        raise _not_found(experiment_id)
    return Response(status_code=204)
