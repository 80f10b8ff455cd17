"""The bounds on the state the worker keeps, so no client can grow it without limit.

Every bound is a setting (README's configuration table). The worker and the rebuild build
one :class:`StateBounds` from settings; ``stream.item_ops`` and ``stream.redis_writer``
apply it:

* per-entity Redis keys (lists, cart, basket, purchases) expire after the entity's last
  write (``entity_ttl_s``; ``anonymous_ttl_s`` for anonymous ids, which are free to make);
* carts and purchases are sorted sets trimmed to the newest ``cart_max`` / ``bought_max``
  (the serve script reads a cart as at most ``cart_max`` entries);
* distinct users and buyers of an item are exact up to ``distinct_exact_max``, then a
  HyperLogLog (12 KB at most) counts on;
* popular and trending keep the top ``ranked_items_max`` items (the newest catalog items
  the newest ``ranked_items_max``), co-occurrence the top ``cooc_max`` partners per item;
* with ``require_catalog``, events and impressions of items the catalog does not know
  create no per-item keys and no popular/trending/co-occurrence entries;
* an anonymous id is identified as at most ``identify_max_links`` users, and its history
  (``History``, the Faust table's value) holds at most ``history_max`` events,
  ``bought_max`` purchases and (an anonymous id's, for its identify) ``cart_max`` cart
  items and ``2 × cart_max`` cart removals;
* an experiment's outcome keys expire ``experiment_ttl_s`` after their last write, a
  user's identified anonymous ids ``links_ttl_s`` after theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.limits import links_ttl_s
from core.settings import Settings


def setting_default(name: str) -> Any:
    """The default of setting ``name``: the one place a bound's default value is written
    (:class:`core.settings.Settings`), which the worker's config classes take theirs from."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class StateBounds:
    """The bounds (defaults = the settings' defaults)."""

    entity_ttl_s: int = setting_default("entity_ttl_s")
    anonymous_ttl_s: int = setting_default("anonymous_ttl_s")
    cart_max: int = setting_default("cart_max")
    bought_max: int = setting_default("bought_max")
    distinct_exact_max: int = setting_default("distinct_exact_max")
    ranked_items_max: int = setting_default("ranked_items_max")
    cooc_max: int = setting_default("cooc_max")
    require_catalog: bool = setting_default("require_catalog")
    identify_max_links: int = setting_default("identify_max_links")
    experiment_ttl_s: int = setting_default("experiment_ttl_s")

    def ttl_s(self, anonymous: bool) -> int:
        """Lifetime of an entity's keys after its last write."""
        return self.anonymous_ttl_s if anonymous else self.entity_ttl_s

    @property
    def links_ttl_s(self) -> int:
        """Lifetime of a user's identified anonymous ids after its last write
        (:func:`core.limits.links_ttl_s`)."""
        return links_ttl_s(self.entity_ttl_s, self.anonymous_ttl_s)


def state_bounds(settings: Settings) -> StateBounds:
    """The bounds configured by settings."""
    return StateBounds(
        entity_ttl_s=settings.entity_ttl_s, anonymous_ttl_s=settings.anonymous_ttl_s,
        cart_max=settings.cart_max, bought_max=settings.bought_max,
        distinct_exact_max=settings.distinct_exact_max,
        ranked_items_max=settings.ranked_items_max, cooc_max=settings.cooc_max,
        require_catalog=settings.require_catalog,
        identify_max_links=settings.identify_max_links,
        experiment_ttl_s=settings.experiment_ttl_s,
    )
