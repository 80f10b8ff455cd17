"""Response bodies of the admin (operations) endpoints.

Kept apart from ``schemas.api`` so the public recommendation contract and the operator
endpoints evolve independently; import from ``schemas.admin``.
"""

from __future__ import annotations

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
