"""The Redis key names of merchandising and forgetting (API.md "Merchandising"):
catalog columns, category item sets and the newest items (``stream.catalog_columns``),
promotions (``api.promotions``) and the experiment definitions' write count, forgotten ids,
those whose sweep is pending and the anonymous ids a user was identified with
(``stream.forget``). A part of
:class:`core.redis_keys.RedisKeys`, whose module holds the table of every key and says
why each sits in its slot: a user's keys share the user's tag, everything else here is in
the shared slot (``s``), which the serve script reads in its one call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

#: The value of :attr:`MerchKeys.columns_ready` once the catalog columns, the category
#: sets, the newest items and the price index are whole (``stream.catalog_columns``
#: fills what an older value lacks: "1" had no newest items, "2" no price index, "3" no
#: serving rows; the serve script reads the price index and the rows only under this
#: value).
COLUMNS_VERSION = "4"


class MerchKeys:
    """Key builders of :class:`core.redis_keys.RedisKeys` for merchandising and forgetting
    (``p`` is the prefix, ``s`` the shared slot's key head)."""

    __slots__ = ()
    p: str
    s: str

    if TYPE_CHECKING:
        def _u(self, entity: str, suffix: str) -> str: ...

    def user_anons(self, entity: str) -> str:
        """Anonymous ids identified as a user (in the user's slot)."""
        return self._u(entity, "anons")

    @property
    def anons_ttl_done(self) -> str:
        """Set once every :meth:`user_anons` set has an expiry (an older version wrote
        them without one; ``stream.anons_ttl``)."""
        return f"{self.s}anons:ttl"

    @property
    def item_categories(self) -> str:
        """Item → category (catalog column)."""
        return f"{self.s}items:category"

    @property
    def item_prices(self) -> str:
        """Item → price (catalog column)."""
        return f"{self.s}items:price"

    @property
    def item_rows(self) -> str:
        """Item → its serving row (catalog column): stock, deletion, price, currency,
        category and name in one value, so the serve script reads a candidate's catalog
        fields with one ``HGET`` instead of its hash's 7 fields
        (``stream.catalog_columns.serve_row``)."""
        return f"{self.s}items:row"

    @property
    def item_price_index(self) -> str:
        """Item → price as a sorted set (catalog column): the items of a price band, for a
        price filter that the scan budget leaves short (``api/lua/serve_category.lua``)."""
        return f"{self.s}items:by_price"

    def category_items(self, category: str) -> str:
        """Items of a category and its sub-categories."""
        return f"{self.s}cat:{category}:items"

    @property
    def new_items(self) -> str:
        """Item → when a catalog record listed it: the newest ``ranked_items_max`` items
        (the last link of every fallback chain; ``stream.catalog_columns``)."""
        return f"{self.s}items:new"

    @property
    def columns_ready(self) -> str:
        """Set once the catalog columns are complete."""
        return f"{self.s}items:columns"

    @property
    def promotions(self) -> str:
        """Promotions by id (JSON values)."""
        return f"{self.s}promotions"

    @property
    def promotions_rev(self) -> str:
        """Counts the writes of :attr:`promotions` (what tells an API process that its
        copy is behind)."""
        return f"{self.s}promotions:rev"

    @property
    def experiments_rev(self) -> str:
        """Counts the writes of the experiment definitions (``RedisKeys.experiments``;
        read by ``api.experiment_defs`` as the promotions' count is)."""
        return f"{self.s}experiments:rev"

    @property
    def forgotten(self) -> str:
        """Forgotten entities and when."""
        return f"{self.s}forgotten"

    @property
    def forgotten_pending(self) -> str:
        """Forgotten entities whose background sweep is not done → the time of the forget:
        written before the erase, struck off after the sweep, so a worker stopped
        mid-sweep leaves it to the next (``stream.forget.Forgetting.resume``)."""
        return f"{self.s}forgotten:pending"

    @property
    def serve_cache_probe(self) -> str:
        """Written by an API process at start-up to see that Redis reports writes to its
        near cache (``api.tracking_conn``); under a tracked prefix, read by nobody."""
        return f"{self.s}items:cache-probe"
