"""Tracking: ``POST /v1/events`` and ``POST /v1/identify`` (tracking key, also as ``?key=``
or a body ``"key"`` for page-hide requests: :mod:`api.tracking_key`)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from api.body import json_body_openapi, parse_model, read_json
from api.deps import ExperimentsDep, IngestorDep, SettingsDep
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.ingest import validation_context
from api.routes.common import error_responses
from api.tracking_key import TrackingClient, without_key
from core.limits import MAX_ID_LEN
from schemas import Accepted, EventsAccepted, IdentifyRequest

router = APIRouter(
    tags=["tracking"],
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
)


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsAccepted,
    response_description="Kafka acknowledged every event",
    responses={202: {"content": {"application/json": {"example": {
        "accepted": 2, "event_ids": ["3f0c8a7e-purchase-1",
                                     "0b6f5f52-1c4e-4a8e-9a57-3f2b1d8c9e10"]}}}}},
    openapi_extra=json_body_openapi(
        "TrackingEvent",
        "EventBatch",
        example={"events": [{"type": "view", "user_id": "u42", "item_id": "sku-1"}]},
    ),
)
async def post_events(
    request: Request, response: Response, ingestor: IngestorDep, client: TrackingClient,
    idempotency_key: Annotated[
        str | None,
        Header(alias=IDEMPOTENCY_HEADER, max_length=MAX_ID_LEN,
               description="makes the whole batch retry-safe: events without event_id get "
                           "ids derived from it, and a retry with the same key and body is "
                           "answered again without being recorded twice"),
    ] = None,
) -> EventsAccepted:
    """Record one event or a batch (`{"events": [...]}`); 202 once Kafka acknowledged all."""
    answer, replayed = await ingestor.track(without_key(await read_json(request)), client,
                                            idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return answer


@router.post(
    "/v1/identify",
    status_code=202,
    response_model=Accepted,
    openapi_extra=json_body_openapi(
        "IdentifyRequest", example={"anonymous_id": "anon-7f3a", "user_id": "u42"}
    ),
)
async def identify(request: Request, ingestor: IngestorDep, client: TrackingClient,
                   settings: SettingsDep, experiments: ExperimentsDep) -> Accepted:
    """Link an anonymous visitor to a user: the anonymous history counts for the user
    (and in running experiments the user keeps the anonymous visitor's variant)."""
    payload = without_key(await read_json(request))
    body = parse_model(IdentifyRequest, payload,
                       context=validation_context(settings, time.time()))
    accepted = await ingestor.identify(body, client)
    await experiments.link(body.anonymous_id, body.user_id)
    return accepted
