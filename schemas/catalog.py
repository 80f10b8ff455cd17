"""Catalog items and stock: admin writes, and the ``catalog`` topic records."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from core.limits import (
    CONTROL_CHARS,
    MAX_BATCH_ITEMS,
    MAX_ID_LEN,
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTIES_DEPTH,
    MAX_STOCK,
    json_bound_problem,
)
from schemas.common import Identifier, Price, not_a_bool

#: Units on hand: a whole, non-negative count (a JSON boolean is no count).
Stock = Annotated[int, Field(ge=0, le=MAX_STOCK, examples=[12]), BeforeValidator(not_a_bool)]


class CatalogFields(BaseModel):
    """An item's catalog state: the fields every catalog write and record carries.
    ``stock`` (optional) is the units on hand: 0 makes the item out of stock whatever
    ``in_stock`` says."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Espresso beans 1kg",
                    "price": 24.9,
                    "currency": "EUR",
                    "category": "coffee",
                    "in_stock": True,
                    "properties": {"roast": "dark"},
                }
            ]
        }
    )

    name: str | None = Field(None, max_length=1024)
    price: Price | None = None
    currency: str | None = Field(None, min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")
    category: str | None = Field(None, max_length=MAX_ID_LEN)
    in_stock: bool = True
    stock: Stock | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sold_out(self) -> CatalogFields:
        # A shop's feed often says "stock: 0" and nothing else: that item is not for sale.
        if self.stock == 0:
            self.in_stock = False
        return self


class ItemUpdate(CatalogFields):
    """The body of ``PUT /v1/items/{item_id}``: the item's full current state (a field
    left out is cleared; ``in_stock`` left out is true). ``name`` and ``category`` hold
    no control characters; ``category`` is stored trimmed (blank = none);
    ``properties`` is at most 8 levels deep and 16 KB as JSON."""

    # The bounds (core.limits) check writes only, not CatalogRecord: records already on
    # the catalog topic replay as they were written.

    @field_validator("name", "category")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and CONTROL_CHARS.search(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("category")
    @classmethod
    def _selectable(cls, value: str | None) -> str | None:
        # A category filter (``category=a,b``) trims each name, so a category with
        # surrounding spaces could never be selected: trim it, a blank one is none. A
        # comma stays accepted (API.md's catalog takes any category; "Home, Garden" is
        # a real one): a filter cannot name it, only a dotted parent of it can.
        if value is None:
            return None
        return value.strip() or None

    @field_validator("currency")
    @classmethod
    def _iso_code(cls, value: str | None) -> str | None:
        # ISO 4217 codes are upper case: "eur" and "EUR" are one currency, stored once.
        return None if value is None else value.upper()

    @field_validator("properties")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = json_bound_problem(value, "properties", MAX_PROPERTIES_DEPTH,
                                     MAX_PROPERTIES_BYTES)
        if problem is not None:
            raise ValueError(problem)
        return value


class CatalogItem(ItemUpdate):
    """One item of ``POST /v1/items``: an ItemUpdate with its id."""

    item_id: Identifier


class ItemBatch(BaseModel):
    """``{"items": [...]}``: bulk catalog upsert."""

    items: list[CatalogItem] = Field(..., min_length=1, max_length=MAX_BATCH_ITEMS)


class CatalogRecord(CatalogFields):
    """A message on the ``catalog`` topic (key = item id); ``deleted`` marks a deletion."""

    item_id: Identifier
    deleted: bool = False
    updated_at: float = Field(..., gt=0, allow_inf_nan=False)
