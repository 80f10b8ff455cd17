"""The key module is the only place key names are spelled (core/redis_keys.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from core.redis_keys import RedisKeys

ROOT = Path(__file__).resolve().parents[3]
K = RedisKeys()


def test_patterns_are_derived_from_the_builders() -> None:
    assert K.pattern("item_stats") == "sr:i:*:stats"
    assert K.pattern("seen") == "sr:seen:*"
    assert K.pattern("attribution") == "sr:attrib:*"  # origins and page contexts
    assert K.user_recs("u1").startswith(K.entity_pattern[:-1])
    assert RedisKeys("shop2:").pattern("user_cart") == "shop2:u:*:cart"
    assert K.split("item_meta") == ("sr:i:", ":meta")
    assert K.item_pattern() == "sr:i:*:*" and K.item_pattern("x-*") == "sr:i:x-*:*"
    assert K.pattern("rate_limit", "*") == "sr:rl:*:*"


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
