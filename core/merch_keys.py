"""The Redis key names of merchandising and forgetting (API.md "Merchandising"):
catalog columns and category item sets (``stream.catalog_columns``), promotions
(``api.promotions``), forgotten ids and the anonymous ids a user was identified with
(``stream.forget``). A part of :class:`core.redis_keys.RedisKeys`, whose module holds the
table of every key.
"""

from __future__ import annotations


class MerchKeys:
    """Key builders of :class:`core.redis_keys.RedisKeys` for merchandising and forgetting
    (``p`` is the prefix)."""

    __slots__ = ()
    p: str

    def user_anons(self, entity: str) -> str:
        """Anonymous ids identified as a user."""
        return f"{self.p}u:{entity}:anons"

    @property
    def item_categories(self) -> str:
        """Item → category (catalog column)."""
        return f"{self.p}items:category"

    @property
    def item_prices(self) -> str:
        """Item → price (catalog column)."""
        return f"{self.p}items:price"

    def category_items(self, category: str) -> str:
        """Items of a category and its sub-categories."""
        return f"{self.p}cat:{category}:items"

    @property
    def columns_ready(self) -> str:
        """Set once the catalog columns are complete."""
        return f"{self.p}items:columns"

    @property
    def promotions(self) -> str:
        """Promotions by id (JSON values)."""
        return f"{self.p}promotions"

    @property
    def forgotten(self) -> str:
        """Forgotten entities and when."""
        return f"{self.p}forgotten"
