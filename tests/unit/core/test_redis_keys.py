"""The key module is the only place key names are spelled (core/redis_keys.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.redis_keys import ITEM_BUCKETS, SHARED_TAG, RedisKeys, tag_of

ROOT = Path(__file__).resolve().parents[3]
K = RedisKeys()


def test_patterns_are_derived_from_the_builders() -> None:
    assert K.pattern("item_stats") == "sr:i:{*}:*:stats"
    assert K.pattern("seen", "*") == "sr:seen:{*}:*"
    assert K.pattern("attribution") == "sr:{s}:attrib:*"  # origins and page contexts
    assert K.user_recs("u1").startswith(K.entity_pattern[:-1])
    assert RedisKeys("shop2:").pattern("user_cart") == "shop2:u:{*}:*:cart"
    assert K.split("item_meta") == ("sr:{s}:i:", ":meta")
    assert K.item_pattern() == "sr:i:{*}:*:*" and K.item_pattern("x-*") == "sr:i:{*}:x-*:*"
    assert K.pattern("rate_limit", "*") == "sr:rl:{rl}:*:*"
    with pytest.raises(ValueError, match="slot depends on the id"):
        K.split("item_cooc")  # Lua cannot build a bucketed key: Python passes it


def test_keys_that_one_script_touches_share_a_hash_tag() -> None:
    """An entity's keys share a slot, an item's keys share one, the shared data and the
    rate limiter have one each, whatever the ids hold (braces never move a key)."""
    for entity in ("u7", "a{b}c", "}{", "日本"):
        tags = {tag_of(getattr(K, f"user_{n}")(entity))
                for n in ("recs", "recent", "bought", "cart", "basket")}
        assert tags == {K.entity_tag(entity)}, entity
    for item in ("sku-1", "{x}", "i:1:stats"):
        tags = {tag_of(getattr(K, f"item_{n}")(item)) for n in (
            "similar", "cooc", "stats", "users", "users_hll", "buyers", "buyers_hll",
            "carters")}
        assert tags == {K.item_tag(item)}, item
        assert tag_of(K.item_meta(item)) == tag_of(K.item_newcomers(item, 3, 1)) == SHARED_TAG
    shared = (K.popular, K.trending, K.trending_epoch, K.unavailable, K.deleted,
              K.model_current, K.stats, K.freshness_histogram, K.worker_registry,
              K.dead_letters, K.relist_pending, K.attribution("x"), K.outbox(5),
              K.seen(SHARED_TAG, 5))
    assert {tag_of(key) for key in shared} == {SHARED_TAG}
    assert {tag_of(K.rate_limit(r, "k")) for r in ("read", "ent", "addr")} == {"rl"}
    assert len({K.item_tag(f"sku-{i}") for i in range(5000)}) == ITEM_BUCKETS


def test_no_other_module_spells_a_key() -> None:
    """No string literal starting with the key prefix anywhere else, tests included."""
    found = []
    for package in ("core", "schemas", "recommender", "stream", "api", "streamrec",
                    "scripts", "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "core" / "redis_keys.py" or path == Path(__file__):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                value = getattr(node, "value", None) if isinstance(node, ast.Constant) else None
                if isinstance(value, str | bytes) and value[:3] in ("sr:", b"sr:"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value!r}")
    assert found == []
