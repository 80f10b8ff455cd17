"""Redis Cluster hash tags of streamrec's keys (``{...}`` picks a key's slot): which ids
share a slot, and how a key's tag is found. The key names themselves are built in
:mod:`core.redis_keys` (the layout and why each key sits where it does).
"""

from __future__ import annotations

import zlib

#: Item / entity buckets. Changing one renames keys (then ``streamrec replay --rebuild``).
ITEM_BUCKETS, ENTITY_BUCKETS = 256, 16384
#: The shared slot's tag and the rate limiter's.
SHARED_TAG, RATE_LIMIT_TAG = "s", "rl"
#: Stands for "any id" while patterns are derived from the builders
#: (``RedisKeys.pattern``): its tag is ``*``.
ANY = "\x00"


def _bucket(value: str, buckets: int) -> int:
    """A stable bucket of an id (CRC-32 of its UTF-8 bytes)."""
    return zlib.crc32(value.encode("utf-8", errors="surrogatepass")) % buckets


def tag_of(key: str) -> str:
    """The hash tag of a key as Redis Cluster finds it (else the whole key)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def entity_tag(entity: str) -> str:
    """The hash tag of a user's or anonymous id's keys."""
    return "*" if entity == ANY else str(_bucket(entity, ENTITY_BUCKETS))


#: What an item's tag holds before its bucket number.
ITEM_TAG_PREFIX = "i"


def item_tag(item: str) -> str:
    """The hash tag of an item's keys (its bucket)."""
    return "*" if item == ANY else f"{ITEM_TAG_PREFIX}{_bucket(item, ITEM_BUCKETS)}"


def experiment_tag(experiment_id: str) -> str:
    """The hash tag of one experiment's keys (ids have no braces: core.limits)."""
    return "*" if experiment_id == ANY else f"x:{experiment_id}"


#: An id whose keys show which bucket rule a key builder follows (:func:`bucket_parts`).
BUCKET_PROBE = "probe"


def bucket_parts(builder: str, any_key: str, probe_key: str, probe: str
                 ) -> list[str | int]:
    """``[head, middle, tail, buckets]`` of a key builder whose slot is its id's bucket,
    from its key of :data:`ANY` and of ``probe``: the key of an id is ``head +
    str(crc32(id) % buckets) + middle + id + tail``. For scripts on one Redis that build
    the keys of ids they discover; raises ValueError for other builders."""
    head, found, rest = any_key.partition("{*}")
    middle, _, tail = rest.partition(ANY)
    tag = tag_of(probe_key)
    if found and tag == item_tag(probe):
        return [f"{head}{{{ITEM_TAG_PREFIX}", f"}}{middle}", tail, ITEM_BUCKETS]
    if found and tag == entity_tag(probe):
        return [f"{head}{{", f"}}{middle}", tail, ENTITY_BUCKETS]
    raise ValueError(f"{builder}: not a key of an item's or an entity's bucket")
