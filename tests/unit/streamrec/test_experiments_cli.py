"""``streamrec experiments`` output and the experiment simulator's pure parts, without
servers."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest

from recommender.experiments import build_report
from streamrec.ops.experiments import format_report
from streamrec.sim.experiment import (
    ExperimentTruth,
    differences,
    home_problem,
    plan_visitor,
    relevance,
)
from streamrec.sim.shop_model import ShopModel

COUNTS = {"control": {"entities": 5000, "purchasers": 400, "purchase": 420,
                      "revenue": 10_000_000_000, "revenue_sq": 800_000.0},
          "treatment": {"entities": 5100, "purchasers": 520, "purchase": 560,
                        "impression": 5100, "click": 900, "add_to_cart": 700,
                        "revenue": 14_000_000_000, "revenue_sq": 1_300_000.0}}


def test_report_text_names_lift_intervals_and_srm() -> None:
    report = {**build_report("e", [("control", 0.5), ("treatment", 0.5)], COUNTS),
              "status": "running"}
    text = format_report(report)
    assert "experiment e (running), control control" in text
    assert "lift of treatment: conversion +27.5 %" in text and "(excludes 0)" in text
    assert "sample ratio: p = 0.32 (ok)" in text
    biased = {**build_report("e", [("control", 0.5), ("treatment", 0.5)],
                             {"control": {"entities": 6000}, "treatment": {"entities": 4000}}),
              "status": "stopped"}
    assert "MISMATCH" in format_report(biased)
    empty = {**build_report("e", [("a", 1.0)], {}), "status": "running"}
    assert "not testable yet" in format_report(empty)


def test_visitors_are_planned_deterministically() -> None:
    model = ShopModel(items=200, users=10, seed=3)
    plans = [plan_visitor(model, 3, i, 0.3) for i in range(300)]
    assert plans == [plan_visitor(model, 3, i, 0.3) for i in range(300)]
    assert len({p.entity for p in plans}) == 300
    kinds = Counter(p.entity.split("-")[0] for p in plans)
    assert 50 < kinds["xa"] < 130 and all(p.user_id is None for p in plans
                                          if p.entity.startswith("xu-"))
    by_id = {item.item_id: item for item in model.items}
    v = plans[0]
    assert all(item.category in v.taste for item in v.views)
    assert relevance([], v.taste, by_id) == 0.0
    assert relevance([v.views[0].item_id, "unknown"], v.taste, by_id) == 0.5


def test_differences_name_every_mismatch() -> None:
    truth = ExperimentTruth()
    truth.add("control", "entities", 2)
    truth.add("control", "purchase")
    truth.add("control", "revenue", 9.99)
    report = {"variants": [{"name": "control", "entities": 2, "impressions": 0, "clicks": 0,
                            "add_to_cart": 0, "purchases": 1, "purchasers": 0,
                            "revenue": 9.99}]}
    assert differences(report, truth) == []
    report["variants"][0]["purchases"] = 2
    assert differences(report, truth) == ["control.purchases: report 2, sent 1"]


def _doc(experiment_id: str, contexts: list[str] | None = None,
         status: str = "running") -> dict[str, object]:
    return {"experiment_id": experiment_id, "contexts": contexts, "status": status,
            "variants": [{"name": "control", "weight": 1.0, "serve": "holdout"}]}


def test_simulated_visitors_need_the_experiment_to_serve_home() -> None:
    """The visitors look at the home list: an experiment that does not answer it (stopped,
    other contexts, or shadowed by a running one first by id) would make every count
    differ under another experiment's variant names; the run refuses it up front."""
    assert home_problem("b", [_doc("b")]) is None
    assert home_problem("b", [_doc("b", ["cart", "home"]), _doc("a", ["cart"]),
                              _doc("a2", status="stopped")]) is None
    stopped = home_problem("b", [_doc("b", status="stopped")])
    assert stopped is not None and "stopped" in stopped
    elsewhere = home_problem("b", [_doc("b", ["checkout", "similar"])])
    assert elsewhere is not None and "checkout, similar" in elsewhere
    shadowed = home_problem("b", [_doc("b", ["home"]), _doc("a", ["product", "home"])])
    assert shadowed is not None and "'a'" in shadowed
    assert home_problem("b", [_doc("a")]) is not None  # not defined: named as such


def test_a_second_run_sends_new_visitors_and_is_checked_on_its_own() -> None:
    """`simulate --experiment` run twice on one experiment: the second run's visitors are
    new entities (same draws, other ids), and its truth is compared with what the report
    gained during the run, not with what earlier runs left there."""
    model = ShopModel(items=50, users=5, seed=3)
    first = plan_visitor(model, 3, 7, 0.5, run="a1")
    again = plan_visitor(model, 3, 7, 0.5, run="b2")
    assert first.entity != again.entity
    assert (first.user_id is None) == (again.user_id is None)
    assert first.user_id is None or first.user_id != again.user_id
    assert (first.taste, first.buy_draw, first.views) == (again.taste, again.buy_draw, again.views)

    truth = ExperimentTruth()
    truth.add("t", "entities", 3)
    truth.add("t", "purchase")
    truth.add("t", "purchasers")
    truth.add("t", "revenue", 5.5)
    row = {"name": "t", "entities": 10, "impressions": 4, "clicks": 1, "add_to_cart": 0,
           "purchases": 3, "purchasers": 2, "revenue": 20.25}
    before = {"variants": [row]}
    after = {"variants": [{**row, "entities": 13, "purchases": 4, "purchasers": 3,
                           "revenue": 25.75}]}
    assert differences(after, truth, before) == []
    assert differences(after, truth) != []  # the whole report: earlier runs included


def test_an_unknown_experiment_is_reported_on_stderr_leaving_stdout_empty(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`streamrec experiments report ID --json` for an id with no experiment: exit 1, the
    reason on stderr and nothing on stdout, so a script reading the JSON gets no stray
    line (it was printed on stdout)."""
    from streamrec.ops import experiments as cli

    monkeypatch.setattr(cli, "_with_store", lambda _use: None)
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.run(parser.parse_args(["report", "nope", "--json"])) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "no experiment 'nope'" in err


def test_no_action_prints_the_help_like_the_other_command_groups(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`streamrec experiments` alone: its help and exit 0, as `streamrec topics` does
    (it was an argparse error, exit 2)."""
    from streamrec.ops import experiments as cli

    parser = argparse.ArgumentParser(prog="streamrec experiments")
    cli.configure_parser(parser)
    assert cli.run(parser.parse_args([])) == 0
    assert "list" in capsys.readouterr().out
