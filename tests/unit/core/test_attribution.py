"""Recommendation ids (core.attribution): the experiment segment is an addition; ids of
earlier versions parse as before."""

from __future__ import annotations

from core.attribution import (
    UNATTRIBUTED,
    experiment_of,
    new_recommendation_id,
    parse_recommendation_id,
    with_experiment,
)


def test_ids_with_and_without_an_experiment_segment() -> None:
    plain = new_recommendation_id("home", "personalized")
    tagged = new_recommendation_id("home", "holdout", ("recs-vs-holdout", "control"))
    assert parse_recommendation_id(plain) == ("home", "personalized")
    assert parse_recommendation_id(tagged) == ("home", "holdout")
    assert experiment_of(plain) is None
    assert experiment_of(tagged) == ("recs-vs-holdout", "control")
    assert with_experiment(plain, "e", "v").startswith(plain + ".")
    assert len(tagged) <= 256


def test_old_and_forged_ids() -> None:
    assert parse_recommendation_id("cart.complement.3f0c8a7e9b1d4c2a8e7f6a5b") == (
        "cart", "complement")
    assert parse_recommendation_id("a.b") == (UNATTRIBUTED, UNATTRIBUTED)
    assert parse_recommendation_id("a.b.c.d.e") == (UNATTRIBUTED, UNATTRIBUTED)
    assert parse_recommendation_id("home.nonsense.3f0c8a7e9b1d4c2a8e7f6a5b.e:v") == (
        "home", UNATTRIBUTED)
    # a made-up random segment: not an id this API issued, so no row gets the event
    for made_up in ("home.personalized.forged", "home.personalized.deadbeef",
                    "home.personalized.3F0C8A7E9B1D4C2A8E7F6A5B",
                    "home.personalized.3f0c8a7e9b1d4c2a8e7f6a5b0", "home.popular..e:v"):
        assert parse_recommendation_id(made_up) == (UNATTRIBUTED, UNATTRIBUTED)
    for forged in ("home.popular.x.e", "home.popular.x.:v", "home.popular.x.e:", None, ""):
        assert experiment_of(forged) is None
