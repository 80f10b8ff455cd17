"""Merchandising shapes (API.md "Merchandising"): promotions, the explain trace, and the
record of a forgotten user or anonymous id.

Import from ``schemas.merch`` (the explain models also appear in
``schemas.api.RecommendationList``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.attribution import CONTEXTS
from core.limits import CONTROL_CHARS, MAX_CATEGORY_LEN, PROMOTION_ITEMS_MAX
from schemas.common import Identifier

#: The page contexts a promotion can run in (``core.attribution.CONTEXTS``).
PromotionContext = Literal["home", "product", "cart", "checkout", "similar", "popular",
                           "trending"]
assert set(PromotionContext.__args__) == set(CONTEXTS)  # type: ignore[attr-defined]

#: Fields of a stored promotion that a PUT body may repeat (ignored).
_READ_ONLY = frozenset({"promotion_id", "updated_at"})

#: Why a candidate was left out of a list (``explain=true``).
DropReason = Literal["out_of_stock", "deleted", "purchased", "in_cart", "excluded",
                     "filtered", "capped"]


def _aware(value: datetime | None) -> datetime | None:
    """Naive times are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class PromotionBody(BaseModel):
    """``PUT /v1/admin/promotions/{promotion_id}``: what to promote, how much, where, when."""

    # a misspelt field ("context", "start_at") is a 422, not a promotion that runs
    # everywhere or at once
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"item_ids": ["sku-1", "sku-2"], "share": 0.2, "contexts": ["home", "product"],
         "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-24T00:00:00Z"},
        {"category": "coffee", "share": 0.1},
    ]})

    item_ids: list[Identifier] | None = Field(
        None, min_length=1, max_length=PROMOTION_ITEMS_MAX,
        description="the items to promote, best first (or `category`)")
    category: str | None = Field(
        None, min_length=1, max_length=MAX_CATEGORY_LEN,
        description="promote the most popular items of this category and its "
                    "sub-categories (or `item_ids`); no control characters")
    share: float = Field(
        0.2, gt=0, le=1, allow_inf_nan=False,
        description="share of a list's slots: up to ceil(share × n) promoted items lead it")
    contexts: list[PromotionContext] | None = Field(
        None, min_length=1, max_length=len(CONTEXTS),
        description="page contexts it runs in (the user endpoint's `context`, or "
                    "`similar`, `popular`, `trending`); absent = all")
    starts_at: datetime | None = Field(None, description="ISO-8601; absent = now")
    ends_at: datetime | None = Field(None, description="ISO-8601, after `starts_at`; "
                                                       "absent = no end")

    _aware = field_validator("starts_at", "ends_at")(_aware)

    @field_validator("share", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A JSON number: ``true`` is not 1.0, nor ``"0.5"`` a share."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("share must be a number from 0 (excluded) to 1")
        return value

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        """ISO-8601 text, as documented: an epoch number is refused, not guessed."""
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("a time must be ISO-8601 text, e.g. 2026-12-24T00:00:00Z")
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_only(cls, data: Any) -> Any:
        """A stored promotion sent back as it was read: its own read-only fields are
        ignored (the path names the promotion, the server stamps the time)."""
        if cls is PromotionBody and isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _READ_ONLY}
        return data

    @field_validator("category")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("category must not be blank")
        if cls is PromotionBody and CONTROL_CHARS.search(value.strip()):
            # no item's category holds one (PUT /v1/items refuses them): a promotion
            # that could never match anything is a 422, not a silent no-op (the body
            # only: one stored before this rule still reads, lists and deletes)
            raise ValueError("category must not contain control characters")
        return value.strip()

    @model_validator(mode="after")
    def _one_target(self) -> PromotionBody:
        if (self.item_ids is None) == (self.category is None):
            raise ValueError("give exactly one of item_ids or category")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if (type(self) is PromotionBody and self.starts_at is None and self.ends_at
                and self.ends_at <= datetime.now(UTC)):
            # absent starts_at = now: a window that ended already would never run (a
            # stored Promotion keeps validating after its end, hence the body only)
            raise ValueError("ends_at must be after starts_at (absent: now); this one "
                             "has passed")
        if self.item_ids is not None:
            self.item_ids = list(dict.fromkeys(self.item_ids))
        if self.contexts is not None:
            self.contexts = list(dict.fromkeys(self.contexts))
        return self


class Promotion(PromotionBody):
    """A stored promotion."""

    model_config = ConfigDict(extra="ignore")

    promotion_id: str = Field(..., examples=["xmas-coffee"])
    updated_at: datetime = Field(..., description="when it was last written")

    def active(self, context: str, now: datetime) -> bool:
        """Whether it applies to a list of ``context`` served at ``now``."""
        if self.contexts is not None and context not in self.contexts:
            return False
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at


class PromotionList(BaseModel):
    """``GET /v1/admin/promotions``: every stored promotion, by id."""

    promotions: list[Promotion]


class TraceSource(BaseModel):
    """A link of the fallback chain the list read."""

    name: str = Field(..., examples=["personalized"])
    size: int = Field(..., ge=0, description="entries the source held")
    age_s: float | None = Field(None, description="seconds since the source was written "
                                                  "(lists the worker stamps)")
    model_version: str | None = Field(None, description="model version of the list")


class TraceDrop(BaseModel):
    """A candidate left out of the list."""

    item_id: str
    why: DropReason


class Trace(BaseModel):
    """``explain=true``: the sources read and the candidates left out (the first ones)."""

    sources: list[TraceSource]
    dropped: list[TraceDrop]
    dropped_total: int = Field(0, ge=0, description="candidates left out in all (the "
                                                    "list shows the first few)")


class ForgetRecord(BaseModel):
    """A record of the ``forgotten`` topic (key = the id): events naming ``entity``
    received until ``at`` are never applied again (``stream.forget``)."""

    entity: Identifier
    at: float = Field(..., gt=0, allow_inf_nan=False, description="epoch seconds")
    user: Identifier | None = Field(None, description="for an anonymous id: the user "
                                                      "whose forgetting it follows")
