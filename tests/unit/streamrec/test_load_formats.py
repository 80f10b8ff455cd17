"""Dataset → event mapping of `streamrec load`, and the bench's histogram quantile."""

from __future__ import annotations

from pathlib import Path

from streamrec.bench.ingest import histogram_quantile
from streamrec.ops.load import partition_envelopes, partition_of, read_events


def test_taobao_mapping_and_deterministic_ids(tmp_path: Path) -> None:
    path = tmp_path / "tb.csv"
    path.write_text("1,10,5,pv,1511658000\n1,11,5,cart,1511658001\n2,10,5,fav,1511658002\n"
                    "2,12,5,buy,1511658003\n3,9,5,weird,1511658004\n")
    events = list(read_events(path))
    assert [e["type"] for e in events] == ["view", "add_to_cart", "add_to_cart", "purchase"]
    assert [e["event_id"] for e in events] == ["tb.csv:1", "tb.csv:2", "tb.csv:3", "tb.csv:4"]
    assert events[0]["ts"] == 1511658000.0
    assert list(read_events(path)) == events  # same ids on every read


def test_lastfm_repeats_plays_and_yoochoose_sessions(tmp_path: Path) -> None:
    lastfm = tmp_path / "user_artists.dat"
    lastfm.write_text("2\t51\t1\r\n2\t52\t8\r\n")
    plays = list(read_events(lastfm))
    assert [e["item_id"] for e in plays] == ["51"] + ["52"] * 4  # 1 + log2(8)
    assert len({e["event_id"] for e in plays}) == len(plays)
    yc = tmp_path / "yoochoose-clicks.txt"
    yc.write_text("SessionId\tItemId\tTime\n3\t214716935\t1396437466.94\n")
    (click,) = read_events(yc)
    assert click["anonymous_id"] == "yc-3" and "user_id" not in click


def test_the_progress_total_is_the_events_a_file_becomes(tmp_path: Path) -> None:
    """Last.fm's lines become up to 10 views each: a total of lines (the bar's, once) put
    ``load`` at 100 % a tenth of the way through, then counting on without an ETA."""
    from streamrec.ops.load_formats import count_events

    lastfm = tmp_path / "plays.dat"
    lastfm.write_text("userID\tartistID\tweight\n2\t51\t1\n2\t52\t8\n2\t53\t5000\n")
    assert count_events(lastfm, "lastfm") == len(list(read_events(lastfm, "lastfm"))) == 15
    taobao = tmp_path / "tb.csv"
    taobao.write_text("1,2,3,pv,1511658000\n1,3,3,buy,1511658001\n")
    assert count_events(taobao, "auto") == len(list(read_events(taobao))) == 2


def test_partition_envelopes_keep_each_entity_on_its_partition() -> None:
    events = [{"event_id": str(i), "type": "view", "user_id": f"u{i % 37}", "item_id": "a",
               "ts": 1.0 + i} for i in range(200)]
    envelopes = partition_envelopes(events, 4)
    assert len(envelopes) <= 4
    import orjson

    for part, _key, value, _ts in envelopes:
        for ev in orjson.loads(value)["events"]:
            assert partition_of(ev["user_id"].encode(), 4) == part


def test_histogram_quantile_interpolates_inside_buckets() -> None:
    before = {0.1: 0.0, 0.5: 0.0, float("inf"): 0.0}
    after = {0.1: 50.0, 0.5: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, before, after) == 0.1
    assert abs(histogram_quantile(0.99, before, after) - 0.492) < 1e-9  # type: ignore[operator]


def test_lastfm_plays_of_other_digits_or_thousands_of_them(tmp_path: Path) -> None:
    """``'²'.isdigit()`` holds yet ``int('²')`` raises, and ``int`` refuses more than 4,300
    digits: both were a traceback of ``streamrec load`` (the progress total counts the
    file before the first event), not a line left out or a line's ten views."""
    from streamrec.ops.load_formats import BadLines, count_events

    lastfm = tmp_path / "plays.dat"
    lastfm.write_text(f"2\t51\t\u00b2\n2\t52\t{'9' * 5000}\n2\t53\t0008\n2\t54\t\u0664\n",
                      encoding="utf-8")
    bad = BadLines()
    plays = list(read_events(lastfm, "lastfm", bad=bad))
    # (other scripts' digits that int reads are a number: U+0664 is 4)
    assert [e["item_id"] for e in plays] == ["52"] * 10 + ["53"] * 4 + ["54"] * 3
    assert bad.count == 1 and bad.examples[0].startswith("line 1:")
    assert count_events(lastfm, "lastfm") == len(plays)
