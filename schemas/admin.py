"""Response bodies of the admin (operations) endpoints.

Kept apart from ``schemas.api`` so the public recommendation contract and the operator
endpoints evolve independently; import from ``schemas.admin``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ItemStats(BaseModel):
    """Exact per-item interaction counts, as applied by the stream (once per event id)."""

    item_id: str
    views: int = Field(0, ge=0, description="`view` events")
    clicks: int = Field(0, ge=0, description="`click` events")
    cart_adds: int = Field(0, ge=0, description="`add_to_cart` events")
    cart_removes: int = Field(0, ge=0, description="`remove_from_cart` events")
    purchases: int = Field(0, ge=0, description="`purchase` events (not quantities)")
    impressions: int = Field(0, ge=0, description="times the item was shown in a list")
    distinct_users: int = Field(
        0, ge=0, description="distinct users / anonymous ids with a view, click, cart add "
        "or purchase of the item"
    )


class CatalogEntry(BaseModel):
    """An item as the API sees it now: its catalog fields and stock (``GET
    /v1/admin/items/{item_id}``). ``known`` is false for ids never sent to the catalog
    (events may name any id); then the other fields are null."""

    item_id: str
    known: bool
    name: str | None = None
    category: str | None = None
    price: float | None = None
    currency: str | None = None
    in_stock: bool | None = Field(None, description="null when the item is not in the catalog")
    properties: dict[str, Any] | None = Field(
        None, description="the `properties` of the last catalog write (null when none)")
    deleted: bool = False
    updated_at: float | None = Field(None, description="epoch seconds of the last catalog write")


class ItemRef(BaseModel):
    """An item id with the name and stock that make it readable on a dashboard."""

    item_id: str
    name: str | None = None
    in_stock: bool | None = None


class EntityOverview(BaseModel):
    """What streamrec holds for one user or anonymous id (``GET /v1/admin/users/{id}``):
    recent items (newest first), cart, purchases and the stored personal list."""

    user_id: str
    recent: list[ItemRef] = Field(default_factory=list, description="newest first")
    cart: list[ItemRef] = Field(default_factory=list)
    purchased: int = Field(0, ge=0, description="distinct items purchased")
    purchased_items: list[ItemRef] = Field(default_factory=list,
                                           description="up to 20 of them")
    personal_list_size: int = Field(0, ge=0, description="items in the stored personal list")
    personal_list_version: str | None = Field(
        None, description="model version of the stored personal list (null: none stored)")
    personal_list_updated_at: float | None = None


class DashboardData(BaseModel):
    """``GET /v1/admin/dashboard``: everything the dashboard page shows, one aggregate
    recomputed at most every 2 s per API process. ``pipeline`` has exactly the keys and
    numbers of ``streamrec status --json`` (without addresses and processes)."""

    generated_at: float = Field(..., description="epoch seconds the pipeline was read")
    refresh_s: float = Field(..., description="how often the page asks again")
    pipeline: dict[str, Any]
    rates: dict[str, float | None] = Field(
        ..., description="messages_in_per_s (events topic), events_per_s (processed)")
    series: dict[str, Any] = Field(
        ..., description="columns over the last minutes: t, messages_in_per_s, "
        "events_per_s, lag, dead_lettered, trending {items, scores}")
    shop: dict[str, Any] = Field(
        ..., description="popular, trending, popular_out_of_stock, attribution, errors")
    experiments: Any | None = Field(None, description="reserved: experiments and their lift")
