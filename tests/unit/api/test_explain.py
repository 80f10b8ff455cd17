"""Shopper-readable reasons and the explain trace (api.explain)."""

from __future__ import annotations

from api.explain import GENERIC, link_name, names_of, reason_text, trace_of


def test_reasons_name_the_item_that_led_to_them_when_known() -> None:
    assert reason_text("session", name="Beans") == "because you viewed Beans"
    assert reason_text("similar", name="Beans") == "similar to Beans"
    assert reason_text("complement", name="Mug") == "bought together with Mug"
    assert reason_text("trending", category="coffee") == "trending in coffee"
    assert reason_text("popular", category="coffee") == "popular in coffee"
    assert reason_text("popular", category="electronics.audio.head_phones") == \
        "popular in head phones"
    assert reason_text("trending", category="kitchen.") == "trending in kitchen."
    assert reason_text("new", category="shoes.kids") == "new in kids"


def test_every_reason_has_a_text_without_names() -> None:
    for reason in ("personalized", "session", "similar", "complement", "buy_again",
                   "popular", "trending", "promoted", "fallback", "new"):
        assert reason_text(reason) == GENERIC[reason]
    assert reason_text("personalized", name="Beans", category="c") == GENERIC["personalized"]
    assert reason_text("something new") == GENERIC["popular"]
    assert reason_text("new") == "new arrival"
    assert reason_text("similar", anchored=True) == "similar to this item"
    assert reason_text("similar", name="Beans", anchored=True) == "similar to Beans"
    assert reason_text("popular", anchored=True) == GENERIC["popular"]


def test_names_and_the_trace_are_read_from_the_reply_tail() -> None:
    reply = ["x", 2, "a", "A", "b", None,
             1, 100, "1700000000.5", "v3", 0, 0, None, None, 1, 7, None, None,
             3, 2, "i1", "filtered", "i2", "capped"]
    names, at = names_of(reply, 1)
    assert names == {"a": "A"} and at == 6
    trace = trace_of(reply, at, ["personalized", "session", "popular"], now=1700000010.5)
    assert trace == {
        "sources": [{"name": "personalized", "size": 100, "age_s": 10.0, "model_version": "v3"},
                    {"name": "popular", "size": 7, "age_s": None, "model_version": None}],
        "dropped": [{"item_id": "i1", "why": "filtered"}, {"item_id": "i2", "why": "capped"}],
        "dropped_total": 3}


def test_link_names() -> None:
    assert link_name("user_recs") == "personalized"
    assert link_name("promoted", "xmas") == "promotion:xmas"
