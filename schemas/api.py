"""Response bodies of the HTTP API (see ../shared/API.md, the public contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.experiments import ExperimentTag
from schemas.merch import Trace

#: ``holdout``: the entity is in an experiment's holdout variant (an empty list).
Source = Literal["personalized", "similar", "session", "popular", "trending", "fallback",
                 "holdout"]


class EventsAccepted(BaseModel):
    """202 answer of ``POST /v1/events``: Kafka acknowledged every one of these."""

    accepted: int = Field(..., ge=0)
    event_ids: list[str]


class Accepted(BaseModel):
    """202 answer of identify and catalog writes."""

    accepted: int = Field(..., ge=0)
    ids: list[str] = Field(default_factory=list)


class RecommendationItem(BaseModel):
    """One recommended item, resolved against the catalog."""

    item_id: str
    score: float
    reason: str = Field(
        ..., description="where this item came from (a code): a `source` value, "
                         "`complement` (cart) / `buy_again` (checkout), `new` (the newest "
                         "catalog items, after every other source), or `promoted`",
        examples=["personalized"],
    )
    reason_text: str | None = Field(
        None, description="the reason in words a shopper can read, naming the item that "
                          "led to it when known",
        examples=["because you viewed Espresso beans 1kg"],
    )
    name: str | None = None
    price: float | None = None
    currency: str | None = None
    category: str | None = None
    in_stock: bool = True


class RecommendationList(BaseModel):
    """Every recommendation endpoint answers with this."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "recommendation_id": "home.personalized.b1f0e2d4c3a24b7e9f3e5a1c",
                    "source": "personalized",
                    "model_version": "v20261123T091500Z",
                    "context": "home",
                    "items": [
                        {
                            "item_id": "sku-9",
                            "score": 0.83,
                            "reason": "personalized",
                            "reason_text": "picked for you from what you viewed",
                            "name": "Espresso beans 1kg",
                            "price": 24.9,
                            "in_stock": True,
                        }
                    ],
                }
            ]
        }
    }

    recommendation_id: str = Field(
        ..., description="unique id of this list, `{context}.{origin}.{random}` (plus "
                         "`.{experiment}:{variant}` for an entity in an experiment); send "
                         "it back with impressions, clicks and purchases for attribution",
        examples=["home.personalized.3f0c8a7e9b1d4c2a8e7f6a5b"],
    )
    source: Source
    model_version: str
    context: str | None = Field(
        None, description="the page context the list was built for", examples=["home"]
    )
    items: list[RecommendationItem]
    trace: Trace | None = Field(
        None, description="with `explain=true`: the sources read and the candidates left "
                          "out, with why")
    experiment: ExperimentTag | None = Field(
        None, description="the experiment and variant of an enrolled entity; absent "
                          "otherwise (API.md \"Experiments\")")


class ErrorInfo(BaseModel):
    """Machine-readable code plus a human message."""

    code: str = Field(..., examples=["validation_error"])
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``error``, plus FastAPI-style ``detail`` for validation."""

    error: ErrorInfo
    detail: list[dict[str, Any]] | None = None
    event_ids: list[str] | None = Field(
        None, description="503 of a tracking write: the ids of its events (server-made "
                          "ones included); nothing was accepted, retry with these ids")


class HealthStatus(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"


class ServiceIndex(BaseModel):
    """``GET /``: what this server is and where its documents live, so an operator who
    opens the API's address in a browser finds the docs, the dashboard and the probes
    instead of a bare 404."""

    service: Literal["streamrec"] = "streamrec"
    version: str
    links: dict[str, str]


class ReadyStatus(BaseModel):
    """``GET /readyz``: ready only when Kafka and Redis both answer."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
    error: ErrorInfo | None = Field(
        None, description="503 only: what is unreachable (API.md: every error has an "
                          "`error` body); absent when ready")


class AttributionRow(BaseModel):
    """Events that carried list ids of one origin or context, and the rates they give."""

    name: str = Field(..., examples=["personalized"])
    impressions: int = Field(..., ge=0, description="impression events (lists shown)")
    clicks: int = Field(..., ge=0)
    add_to_carts: int = Field(..., ge=0)
    purchases: int = Field(..., ge=0)
    ctr: float | None = Field(None, description="clicks / impressions")
    conversion: float | None = Field(None, description="purchases / impressions")
    click_conversion: float | None = Field(None, description="purchases / clicks")


class AttributionReport(BaseModel):
    """``GET /v1/admin/attribution``: click-through and conversion per list origin and
    per page context (only rows with events)."""

    model_config = {
        "json_schema_extra": {
            "examples": [{
                "by_origin": [{"name": "personalized", "impressions": 200, "clicks": 14,
                               "add_to_carts": 5, "purchases": 3, "ctr": 0.07,
                               "conversion": 0.015, "click_conversion": 0.214286}],
                "by_context": [{"name": "home", "impressions": 200, "clicks": 14,
                                "add_to_carts": 5, "purchases": 3, "ctr": 0.07,
                                "conversion": 0.015, "click_conversion": 0.214286}],
            }]
        }
    }

    by_origin: list[AttributionRow]
    by_context: list[AttributionRow]
