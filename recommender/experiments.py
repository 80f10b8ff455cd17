"""Experiment arithmetic: deterministic assignment, lift with 95 % intervals, SRM test.

Pure functions of ids and counts (no I/O, no settings); the API assigns with
:func:`assign_variant`, the report (``api.experiment_store``) turns the worker's counters
into figures with :func:`variant_figures`, :func:`lift` and :func:`srm_p_value`. The
formulas are in docs/experiments.md.

Assignment
----------
``u = int(sha256(experiment_id + "\\x00" + entity)[:8]) / 2**64`` is uniform on [0, 1)
and independent across experiments; the variant is the first whose cumulative weight
exceeds ``u``. Same experiment and entity, same variant, in every process.

Lift
----
For a metric with per-entity mean ``m`` and variance of the mean ``V = s² / n`` in the
variant (t) and the control (c), the relative lift is ``m_t / m_c - 1``; its interval
comes from the delta method on the log of the ratio of independent means,
``Var(log(m_t / m_c)) ≈ V_t / m_t² + V_c / m_c²``, as
``(m_t / m_c) · exp(±1.96 · se) - 1``: asymmetric like the ratio itself, and never
below -100 % (the delta method on the ratio, ``lift ± 1.96 · se``, gave intervals such
as -683 % … +3,082 % on small samples, which no shop can read). With ``m_t = 0`` the
log is undefined: the interval is ``[-1, -1 + 1.96 · sqrt(V_t) / m_c]``. Conversion is
the mean of a 0/1 variable (``s² = p (1 - p)`` with ``n`` in the denominator: the
two-proportion Wald interval); revenue per entity has ``s² = (Σx² - (Σx)² / n) / (n - 1)``
from the running sums. The absolute difference
``m_t - m_c`` with ``se = sqrt(V_t + V_c)`` is reported beside it.

Sample ratio mismatch
---------------------
Pearson's chi-square goodness of fit of the entities per variant against
``total · weight`` (``scipy.stats.chisquare``): a tiny p-value (say < 0.001) means the
split is not what was configured, so the assignment or the exposure logging is broken
and the lift cannot be trusted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from recommender.revenue import MICRO

#: z of a two-sided 95 % interval.
Z95 = 1.959963984540054
_SCALE = float(2**64)


def bucket(experiment_id: str, entity: str) -> float:
    """The entity's uniform draw in [0, 1) for this experiment (sha256, deterministic)."""
    raw = f"{experiment_id}\x00{entity}".encode("utf-8", errors="surrogatepass")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") / _SCALE


def pick(draw: float, weights: Sequence[float]) -> int:
    """Index of the variant a draw in [0, 1) falls in (cumulative weights; the last
    variant takes any rounding remainder)."""
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight
        if draw < running:
            return index
    return len(weights) - 1


def assign_variant(experiment_id: str, entity: str, names: Sequence[str],
                   weights: Sequence[float]) -> str:
    """The variant ``entity`` gets in ``experiment_id`` by hash (before any stickiness)."""
    return names[pick(bucket(experiment_id, entity), weights)]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % interval (None where it cannot be computed)."""

    value: float | None
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        """``{"value", "ci95"}`` (JSON-ready, unrounded: a reader recomputing a figure
        from the counts gets the same float)."""
        return {"value": self.value,
                "ci95": None if self.ci95 is None else [self.ci95[0], self.ci95[1]]}


NOTHING = Estimate(None, None)


@dataclass(frozen=True)
class Sample:
    """One variant's metric: its mean and the variance of that mean."""

    mean: float
    var_mean: float


def proportion(successes: int, n: int) -> Sample | None:
    """A 0/1 metric (conversion): mean ``p`` and ``p (1 - p) / n``; None when n = 0."""
    if n <= 0:
        return None
    p = successes / n
    return Sample(p, p * (1.0 - p) / n)


def mean_of(total: float, total_sq: float, n: int) -> Sample | None:
    """A per-entity metric from its sum and sum of squares over ``n`` entities (entities
    without any contribute 0): mean and ``s² / n``; None when n < 2."""
    if n < 2:
        return None
    mean = total / n
    var = max(0.0, (total_sq - total * total / n) / (n - 1))
    return Sample(mean, var / n)


def relative_lift(treat: Sample | None, control: Sample | None, z: float = Z95) -> Estimate:
    """``treat / control - 1`` with the delta-method interval of the log ratio (see the
    module notes): asymmetric, and never below -100 %; nothing when either is missing or
    the control's mean is 0."""
    if treat is None or control is None or control.mean == 0:
        return NOTHING
    ratio = treat.mean / control.mean
    if treat.mean > 0:
        var_log = treat.var_mean / treat.mean ** 2 + control.var_mean / control.mean ** 2
        half = z * math.sqrt(max(0.0, var_log))
        return Estimate(ratio - 1.0, (ratio * math.exp(-half) - 1.0,
                                      ratio * math.exp(half) - 1.0))
    # Nothing in the treatment: the log is undefined; the ratio's own delta method,
    # here the treatment's spread over the control's mean, from -100 %.
    half = z * math.sqrt(max(0.0, treat.var_mean)) / control.mean
    return Estimate(-1.0, (-1.0, half - 1.0))


def difference(treat: Sample | None, control: Sample | None, z: float = Z95) -> Estimate:
    """``treat - control`` with ``± z · sqrt(V_t + V_c)``."""
    if treat is None or control is None:
        return NOTHING
    diff = treat.mean - control.mean
    half = z * math.sqrt(max(0.0, treat.var_mean + control.var_mean))
    return Estimate(diff, (diff - half, diff + half))


def srm_p_value(observed: Sequence[int], weights: Sequence[float]) -> float | None:
    """p-value of the chi-square goodness-of-fit test of the entities per variant against
    the configured weights; None with fewer than 2 variants or no entities."""
    total = sum(observed)
    if len(observed) < 2 or total <= 0:
        return None
    expected = [total * w / sum(weights) for w in weights]
    result = stats.chisquare(list(observed), expected)
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


#: The per-variant counters the worker keeps (``stream.experiments``), by report field.
COUNTERS = {"entities": "entities", "impressions": "impression", "clicks": "click",
            "add_to_cart": "add_to_cart", "purchases": "purchase",
            "purchasers": "purchasers"}


def variant_figures(name: str, counts: Mapping[str, float]) -> dict[str, Any]:
    """One variant's report row without its lift: the counts, revenue, conversion
    (purchasers / entities) and revenue per entity (None without entities).

    The quotients are not rounded: ``conversion`` is exactly the float
    ``purchasers / entities`` (rounding to 6 places was off by up to 4 × 10⁻⁶ relative
    for a conversion near 0.12, enough to fail an outside check of the arithmetic)."""
    row: dict[str, Any] = {"name": name}
    for field, counter in COUNTERS.items():
        row[field] = int(counts.get(counter, 0))
    revenue = int(counts.get("revenue", 0)) / MICRO
    row["revenue"] = round(revenue, 6)  # micro-units: exact to the last place shown
    n = row["entities"]
    row["conversion"] = row["purchasers"] / n if n else None
    row["revenue_per_entity"] = revenue / n if n else None
    return row


def _samples(counts: Mapping[str, float]) -> tuple[Sample | None, Sample | None]:
    n = int(counts.get("entities", 0))
    revenue = int(counts.get("revenue", 0)) / MICRO
    return (proportion(int(counts.get("purchasers", 0)), n),
            mean_of(revenue, float(counts.get("revenue_sq", 0.0)), n))


def lift(counts: Mapping[str, float], control: Mapping[str, float]) -> dict[str, Any]:
    """``{"conversion": {...}, "revenue_per_entity": {...}}``: relative lift over the
    control with its 95 % interval, plus the absolute ``difference`` of each."""
    conv_t, rev_t = _samples(counts)
    conv_c, rev_c = _samples(control)
    return {
        "conversion": {**relative_lift(conv_t, conv_c).to_dict(),
                       "difference": difference(conv_t, conv_c).to_dict()},
        "revenue_per_entity": {**relative_lift(rev_t, rev_c).to_dict(),
                               "difference": difference(rev_t, rev_c).to_dict()},
    }


def control_of(names: Sequence[str]) -> str:
    """The control: the variant named ``control``, else the first."""
    return "control" if "control" in names else names[0]


def build_report(experiment_id: str, variants: Sequence[tuple[str, float]],
                 counts: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The report of API.md from the per-variant counters (``counts[variant][metric]``,
    metrics as in :data:`COUNTERS` plus ``revenue`` in micro-units and ``revenue_sq``)."""
    names = [name for name, _ in variants]
    control = control_of(names)
    rows = []
    for name in names:
        row = variant_figures(name, counts.get(name, {}))
        if name != control:
            row["lift"] = lift(counts.get(name, {}), counts.get(control, {}))
        rows.append(row)
    p = srm_p_value([row["entities"] for row in rows], [w for _, w in variants])
    return {"experiment_id": experiment_id, "control": control,
            "srm_p_value": p, "variants": rows}
