"""Catalog items and stock: admin writes, and the ``catalog`` topic records."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.limits import MAX_BATCH_ITEMS, MAX_ID_LEN
from schemas.common import Identifier, Price


class ItemUpdate(BaseModel):
    """The body of ``PUT /v1/items/{item_id}``: the item's full current state."""

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
    properties: dict[str, Any] = Field(default_factory=dict)


class CatalogItem(ItemUpdate):
    """One item of ``POST /v1/items``: an ItemUpdate with its id."""

    item_id: Identifier


class ItemBatch(BaseModel):
    """``{"items": [...]}``: bulk catalog upsert."""

    items: list[CatalogItem] = Field(..., min_length=1, max_length=MAX_BATCH_ITEMS)


class CatalogRecord(CatalogItem):
    """A message on the ``catalog`` topic (key = item id); ``deleted`` marks a deletion."""

    deleted: bool = False
    updated_at: float = Field(..., gt=0, allow_inf_nan=False)
