"""Experiment arithmetic (recommender.experiments): assignment by hash, lift intervals
against hand-computed values and against their coverage, the SRM test."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from recommender.experiments import (
    Z95,
    assign_variant,
    bucket,
    build_report,
    difference,
    mean_of,
    pick,
    proportion,
    relative_lift,
    srm_p_value,
)


def test_bucket_is_deterministic_uniform_and_differs_between_experiments() -> None:
    draws = [bucket("exp-a", f"u{i}") for i in range(20_000)]
    assert draws == [bucket("exp-a", f"u{i}") for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(np.mean(draws) - 0.5) < 0.01
    assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 1_850
    other = [bucket("exp-b", f"u{i}") for i in range(20_000)]
    assert abs(np.corrcoef(draws, other)[0, 1]) < 0.03


def test_variants_follow_the_weights() -> None:
    names, weights = ("control", "popular", "treatment"), (0.2, 0.3, 0.5)
    got = Counter(assign_variant("w", f"e{i}", names, weights) for i in range(30_000))
    for name, weight in zip(names, weights, strict=True):
        assert abs(got[name] / 30_000 - weight) < 0.015
    assert pick(0.0, weights) == 0 and pick(0.2, weights) == 1 and pick(0.999999, weights) == 2
    assert pick(1.0, (0.5, 0.5 - 1e-12)) == 1  # rounding remainder goes to the last


def test_conversion_lift_matches_the_log_delta_method_by_hand() -> None:
    # control 100/1000, treatment 150/1000: ratio 1.5
    # Var(log) = (0.15·0.85/1000)/0.15² + (0.1·0.9/1000)/0.1² = 0.85/150 + 0.9/100
    est = relative_lift(proportion(150, 1000), proportion(100, 1000))
    assert est.value == pytest.approx(0.5)
    half = Z95 * math.sqrt(0.85 / 150 + 0.9 / 100)
    assert est.ci95 == pytest.approx((1.5 * math.exp(-half) - 1, 1.5 * math.exp(half) - 1))
    assert est.ci95[0] > 0  # this lift is significant
    diff = difference(proportion(150, 1000), proportion(100, 1000))
    se = math.sqrt(0.15 * 0.85 / 1000 + 0.1 * 0.9 / 1000)
    assert diff.value == pytest.approx(0.05)
    assert diff.ci95 == pytest.approx((0.05 - Z95 * se, 0.05 + Z95 * se))


def test_revenue_per_entity_from_running_sums() -> None:
    values = np.array([0.0] * 7 + [10.0, 20.0, 30.0])
    sample = mean_of(values.sum(), float((values ** 2).sum()), len(values))
    assert sample is not None
    assert sample.mean == pytest.approx(6.0)
    assert sample.var_mean == pytest.approx(values.var(ddof=1) / len(values))
    assert mean_of(5.0, 25.0, 1) is None


def test_degenerate_inputs_give_no_interval() -> None:
    assert relative_lift(proportion(3, 10), proportion(0, 10)).value is None  # control 0
    assert relative_lift(proportion(3, 10), None).ci95 is None
    assert relative_lift(proportion(0, 10), proportion(5, 10)).value == pytest.approx(-1.0)
    assert relative_lift(proportion(0, 10), proportion(5, 10)).ci95 == (-1.0, -1.0)
    zero_revenue = relative_lift(mean_of(0.0, 0.0, 10), mean_of(50.0, 500.0, 10))
    assert zero_revenue.ci95 == (-1.0, -1.0)


def test_small_samples_never_give_a_lift_below_minus_100_percent() -> None:
    """The delta method on the ratio gave -683 % … +3,082 % on a dashboard's small
    experiment: no shop can lose more than everything."""
    rng = np.random.default_rng(3)
    for _ in range(2_000):
        n_t, n_c = (int(v) for v in rng.integers(5, 80, size=2))
        t = proportion(int(rng.integers(1, n_t + 1)), n_t)
        c = proportion(int(rng.integers(1, n_c + 1)), n_c)
        est = relative_lift(t, c)
        assert est.ci95 is not None and est.value is not None
        assert -1.0 < est.ci95[0] <= est.value <= est.ci95[1]
    revenue = relative_lift(mean_of(829.19, 829.19 ** 2 / 3, 76), mean_of(62.0, 62.0 ** 2, 74))
    assert revenue.ci95 is not None and revenue.ci95[0] > -1.0
    assert proportion(0, 0) is None


@pytest.mark.parametrize("lift_true", [0.0, 0.3])
def test_intervals_cover_the_true_lift_95_percent_of_the_time(lift_true: float) -> None:
    rng = np.random.default_rng(7)
    n, p_c, reps = 4_000, 0.1, 1_500
    p_t = p_c * (1 + lift_true)
    covered_conv = covered_rev = 0
    for _ in range(reps):
        buy_c, buy_t = rng.random(n) < p_c, rng.random(n) < p_t
        rev_c = np.where(buy_c, rng.lognormal(3, 0.8, n), 0.0)
        rev_t = np.where(buy_t, rng.lognormal(3, 0.8, n), 0.0)
        conv = relative_lift(proportion(int(buy_t.sum()), n), proportion(int(buy_c.sum()), n))
        rev = relative_lift(mean_of(rev_t.sum(), float((rev_t ** 2).sum()), n),
                            mean_of(rev_c.sum(), float((rev_c ** 2).sum()), n))
        assert conv.ci95 is not None and rev.ci95 is not None
        covered_conv += conv.ci95[0] <= lift_true <= conv.ci95[1]
        covered_rev += rev.ci95[0] <= lift_true <= rev.ci95[1]
    # 95 % nominal; the binomial noise of 1500 reps is ±1.1 %
    assert 0.925 <= covered_conv / reps <= 0.975
    assert 0.92 <= covered_rev / reps <= 0.975


def test_srm_flags_a_60_40_split_of_10000_configured_50_50() -> None:
    p = srm_p_value([6000, 4000], [0.5, 0.5])
    assert p is not None and p < 1e-80  # chi² = 400 with 1 degree of freedom
    assert srm_p_value([5030, 4970], [0.5, 0.5]) == pytest.approx(0.5485, abs=1e-3)
    assert srm_p_value([2000, 3000, 5000], [0.2, 0.3, 0.5]) == pytest.approx(1.0)
    assert srm_p_value([0, 0], [0.5, 0.5]) is None
    assert srm_p_value([10], [1.0]) is None


def test_report_has_control_lift_and_exact_money() -> None:
    counts = {
        "control": {"entities": 1000, "purchasers": 100, "purchase": 120, "impression": 0,
                    "revenue": 2_500_000_000, "revenue_sq": 90_000.0},
        "treatment": {"entities": 1000, "purchasers": 150, "purchase": 170,
                      "impression": 3000, "click": 300, "add_to_cart": 400,
                      "revenue": 4_000_010_000, "revenue_sq": 160_000.0},
    }
    report = build_report("e1", [("treatment", 0.5), ("control", 0.5)], counts)
    assert report["control"] == "control"
    control, treatment = report["variants"][1], report["variants"][0]
    assert "lift" not in control
    assert treatment["revenue"] == 4000.01
    assert treatment["conversion"] == 0.15 and control["revenue_per_entity"] == 2.5
    assert treatment["lift"]["conversion"]["value"] == pytest.approx(0.5)
    assert treatment["lift"]["revenue_per_entity"]["value"] == pytest.approx(0.600004)
    assert treatment["lift"]["conversion"]["difference"]["value"] == pytest.approx(0.05)
    assert report["srm_p_value"] == pytest.approx(1.0)
    # no control named "control": the first variant is the control
    other = build_report("e2", [("a", 0.5), ("b", 0.5)], {})
    assert other["control"] == "a" and other["variants"][1]["lift"]["conversion"]["value"] is None
    assert other["srm_p_value"] is None and other["variants"][0]["conversion"] is None


def test_report_figures_are_the_exact_quotients_of_the_counts() -> None:
    # 10 / 81 = 0.12345679…: rounded to 6 places it was 0.123457, 3 × 10⁻⁶ off relative,
    # which an outside check of purchasers / entities (pytest.approx) refuses.
    counts = {
        "control": {"entities": 81, "purchasers": 10, "purchase": 12, "revenue": 123_456_789},
        "treatment": {"entities": 77, "purchasers": 13, "purchase": 14,
                      "revenue": 987_654_321, "revenue_sq": 20_000.0},
    }
    report = build_report("e3", [("control", 0.5), ("treatment", 0.5)], counts)
    control, treatment = report["variants"]
    assert control["conversion"] == 10 / 81 and treatment["conversion"] == 13 / 77
    assert control["revenue"] == 123.456789 and treatment["revenue"] == 987.654321
    assert control["revenue_per_entity"] == 123.456789 / 81
    assert treatment["revenue_per_entity"] == 987.654321 / 77
    lift = treatment["lift"]["conversion"]
    assert lift["value"] == (13 / 77) / (10 / 81) - 1
    assert lift["difference"]["value"] == 13 / 77 - 10 / 81
    assert report["srm_p_value"] == srm_p_value([81, 77], [0.5, 0.5])
