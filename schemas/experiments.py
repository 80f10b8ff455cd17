"""Experiments (API.md "Experiments"): definitions, the tag on served lists, the exposure
record on the events topic, and the report. How they work: docs/experiments.md."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.limits import (
    EXPERIMENT_NAME_RE,
    MAX_EXPERIMENT_NAME_LEN,
    MAX_VARIANTS,
    WEIGHT_SUM_TOLERANCE,
)
from schemas.common import Identifier

#: An experiment id or variant name (it travels inside recommendation ids and key names).
ExperimentName = Annotated[
    str,
    Field(pattern=EXPERIMENT_NAME_RE, min_length=1, max_length=MAX_EXPERIMENT_NAME_LEN,
          description=f"letters, digits, `_` and `-`, at most {MAX_EXPERIMENT_NAME_LEN}",
          examples=["control"]),
]
#: What a variant serves: the normal chain, a non-personal list, or nothing (the page
#: shows its own default).
ServeKind = Literal["personalized", "popular", "holdout"]
ExperimentStatus = Literal["running", "stopped"]
#: Page contexts an experiment can cover: those with an entity (the user endpoint's
#: contexts, and the similar endpoint with ``user_id``).
ExperimentContext = Literal["home", "product", "cart", "checkout", "similar"]


class Variant(BaseModel):
    """One arm of an experiment."""

    model_config = ConfigDict(extra="forbid")

    name: ExperimentName
    weight: float = Field(..., gt=0, le=1, allow_inf_nan=False,
                          description="share of the entities (all weights sum to 1)")
    serve: ServeKind

    @field_validator("weight", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A JSON number: ``true`` is not a weight of 1, nor ``"0.5"`` one of 0.5 (the
        stored experiment echoes what was sent)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("weight must be a number greater than 0 and at most 1")
        return value


class ExperimentSpec(BaseModel):
    """``PUT /v1/admin/experiments/{experiment_id}``: what to run."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "variants": [{"name": "control", "weight": 0.5, "serve": "holdout"},
                         {"name": "treatment", "weight": 0.5, "serve": "personalized"}],
            "contexts": ["home"], "status": "running"}]},
    )

    variants: list[Variant] = Field(..., min_length=1, max_length=MAX_VARIANTS)
    contexts: list[ExperimentContext] | None = Field(
        None, min_length=1, description="page contexts it covers; absent = every context "
                                        "with an entity")
    status: ExperimentStatus = "running"

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(repeated)}")
        total = math.fsum(v.weight for v in self.variants)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"variant weights must sum to 1, they sum to {total:.12g}")
        if self.contexts is not None and len(set(self.contexts)) != len(self.contexts):
            raise ValueError("contexts must not repeat")
        return self


class Experiment(ExperimentSpec):
    """A stored experiment (the answer of PUT and GET)."""

    model_config = ConfigDict(extra="ignore")

    experiment_id: ExperimentName
    created_at: datetime
    started_at: datetime | None = Field(None, description="first time it was running")
    stopped_at: datetime | None = Field(
        None, description="when it stopped: outcomes after this are not counted, and a "
                          "stopped experiment with enrolled entities cannot run again")


class ExperimentList(BaseModel):
    """``GET /v1/admin/experiments``."""

    experiments: list[Experiment]


class ExperimentTag(BaseModel):
    """``"experiment"`` of a recommendation answer for an enrolled entity."""

    id: str = Field(..., examples=["recs-vs-holdout"])
    variant: str = Field(..., examples=["treatment"])


class ExposureInfo(BaseModel):
    """What an ``exposure`` record on the events topic says (``TopicEvent.experiment``):
    the entity (the record's ``user_id``) received its first answer in ``variant`` of
    experiment ``id`` (definition ``run``); its outcomes count for ``unit`` (itself, or
    the id whose variant it inherited at identify)."""

    id: ExperimentName
    run: str = Field(..., min_length=1, max_length=64)
    variant: ExperimentName
    unit: Identifier


class Estimate(BaseModel):
    """A point estimate with its 95 % interval (null when it cannot be computed)."""

    value: float | None
    ci95: tuple[float, float] | None


class LiftMetric(Estimate):
    """Relative lift over the control (``value`` = variant / control - 1), and the
    absolute difference (variant - control)."""

    difference: Estimate


class Lift(BaseModel):
    """Lift of a variant over the control."""

    conversion: LiftMetric
    revenue_per_entity: LiftMetric


class VariantReport(BaseModel):
    """One variant's outcomes; every event of an entity after its first answer."""

    name: str
    entities: int = Field(..., ge=0, description="distinct entities (people: an identified "
                                                 "anonymous id and its user are one) that "
                                                 "received at least one answer")
    impressions: int = Field(..., ge=0)
    clicks: int = Field(..., ge=0)
    add_to_cart: int = Field(..., ge=0)
    purchases: int = Field(..., ge=0)
    purchasers: int = Field(..., ge=0, description="entities with at least one purchase")
    revenue: float = Field(..., ge=0, description="Σ price × quantity of the purchases")
    conversion: float | None = Field(None, description="purchasers / entities")
    revenue_per_entity: float | None = Field(None, description="revenue / entities")
    lift: Lift | None = Field(None, description="absent for the control")


class ExperimentReport(BaseModel):
    """``GET /v1/admin/experiments/{experiment_id}/report``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "experiment_id": "recs-vs-holdout", "control": "control", "status": "running",
        "srm_p_value": 0.43, "variants": [
            {"name": "control", "entities": 1000, "impressions": 0, "clicks": 0,
             "add_to_cart": 160, "purchases": 100, "purchasers": 90, "revenue": 2500.0,
             "conversion": 0.09, "revenue_per_entity": 2.5},
            {"name": "treatment", "entities": 1010, "impressions": 2900, "clicks": 400,
             "add_to_cart": 250, "purchases": 140, "purchasers": 120, "revenue": 3400.0,
             "conversion": 0.118812, "revenue_per_entity": 3.366337,
             "lift": {"conversion": {"value": 0.320132, "ci95": [0.01, 0.63],
                                     "difference": {"value": 0.028812,
                                                    "ci95": [0.002, 0.056]}},
                      "revenue_per_entity": {"value": 0.346535, "ci95": [0.02, 0.67],
                                             "difference": {"value": 0.866337,
                                                            "ci95": [0.05, 1.68]}}}}]}]})

    experiment_id: str
    control: str = Field(..., description="the variant named `control`, else the first")
    status: ExperimentStatus
    srm_p_value: float | None = Field(
        None, description="chi-square test of the entities per variant against the "
                          "weights; below 0.001 the split is broken (sample ratio mismatch)")
    variants: list[VariantReport]
