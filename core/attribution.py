"""Recommendation ids that say where a list came from, and the attribution report.

A served list's ``recommendation_id`` is ``{context}.{origin}.{24 hex}``, for example
``home.personalized.3f0c8a7e9b1d4c2a8e7f6a5b``: the page context the list was built for
and the *origin* of its first item (a ``Source`` value, or the finer ``complement`` /
``buy_again`` reasons), plus 96 random bits that make it unique.

Why self-describing ids instead of a Redis ``rid → source`` map written at serve time:

* the serving path stays read-only (no write per ``GET``, no per-list keys: at
  1000 lists/s a one-hour map alone would hold 3.6 M keys);
* Kafka stays the truth: the id travels inside the tracking events, so replaying the
  events topic rebuilds the attribution counters exactly, however old the events are;
* the worker attributes an event without any lookup.

A list served to an entity enrolled in an experiment (docs/experiments.md) carries a
fourth segment, ``{experiment}:{variant}``:
``home.holdout.3f0c8a7e9b1d4c2a8e7f6a5b.recs-vs-holdout:control``. Experiment ids and
variant names are letters, digits, ``_`` and ``-`` (``core.limits.EXPERIMENT_NAME_RE``),
so the segments stay unambiguous; three-segment ids of earlier versions still parse.

A client can forge an id, but it can equally forge the clicks themselves; unknown
contexts or origins, and ids whose third segment is not 24 lowercase hex digits (what
:func:`new_recommendation_id` has always made), are counted as ``unattributed``, so forged
ids cannot invent new report rows, and a made-up id such as
``home.personalized.forged`` does not add a click to a real row. The worker counts
every event carrying an id into ``attrib:{origin}`` and ``attrib:ctx:{context}`` hashes
(field = event type, once per event id); :func:`report_rows` turns those counts into
click-through and conversion rates.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

#: Page contexts a list can be built for (``context`` of the user endpoint, plus the
#: contexts implied by the other endpoints).
CONTEXTS: tuple[str, ...] = ("home", "product", "cart", "checkout", "similar", "popular",
                             "trending")
#: What a list's first item can come from.
ORIGINS: tuple[str, ...] = ("personalized", "similar", "session", "popular", "trending",
                            "fallback", "complement", "buy_again", "holdout", "new")
#: Where events with an unparseable or unknown id are counted.
UNATTRIBUTED = "unattributed"
#: Event types the report shows.
COUNTED = ("impression", "click", "add_to_cart", "purchase")

_CONTEXTS = frozenset(CONTEXTS)
_ORIGINS = frozenset(ORIGINS)
#: The random segment of every id this API issues: ``secrets.token_hex(12)``.
_TOKEN = re.compile(r"[0-9a-f]{24}")


def new_recommendation_id(context: str, origin: str,
                          experiment: tuple[str, str] | None = None) -> str:
    """A fresh id for a list of ``origin`` served in ``context`` (to an entity in
    ``experiment`` = ``(experiment id, variant)``, when given)."""
    rid = f"{context}.{origin}.{secrets.token_hex(12)}"
    return with_experiment(rid, *experiment) if experiment else rid


def with_experiment(rid: str, experiment_id: str, variant: str) -> str:
    """``rid`` with the experiment segment ``{experiment}:{variant}`` appended."""
    return f"{rid}.{experiment_id}:{variant}"


def experiment_of(rid: str | None) -> tuple[str, str] | None:
    """``(experiment id, variant)`` encoded in a recommendation id, or None."""
    if not rid:
        return None
    parts = rid.split(".")
    if len(parts) != 4:
        return None
    experiment_id, sep, variant = parts[3].partition(":")
    return (experiment_id, variant) if sep and experiment_id and variant else None


def parse_recommendation_id(rid: str | None) -> tuple[str, str]:
    """``(context, origin)`` of an id (with or without an experiment segment);
    ``unattributed`` for parts that are not known, and for both when the random segment
    is not one this API makes (24 lowercase hex digits)."""
    if not rid:
        return UNATTRIBUTED, UNATTRIBUTED
    parts = rid.split(".")
    if len(parts) not in (3, 4) or not _TOKEN.fullmatch(parts[2]):
        return UNATTRIBUTED, UNATTRIBUTED
    context = parts[0] if parts[0] in _CONTEXTS else UNATTRIBUTED
    origin = parts[1] if parts[1] in _ORIGINS else UNATTRIBUTED
    return context, origin


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def report_row(name: str, counts: Mapping[str, int]) -> dict[str, object]:
    """One report row: the counts plus click-through and conversion rates.

    ``ctr`` = clicks / impressions, ``conversion`` = purchases / impressions and
    ``click_conversion`` = purchases / clicks (``None`` when the denominator is 0).
    """
    c = {etype: int(counts.get(etype, 0)) for etype in COUNTED}
    return {
        "name": name,
        "impressions": c["impression"],
        "clicks": c["click"],
        "add_to_carts": c["add_to_cart"],
        "purchases": c["purchase"],
        "ctr": _rate(c["click"], c["impression"]),
        "conversion": _rate(c["purchase"], c["impression"]),
        "click_conversion": _rate(c["purchase"], c["click"]),
    }
