"""``streamrec eval`` end to end on small events files, plus its table and checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from streamrec.eval import offline as eval_cmd
from streamrec.eval.datasets import DatasetMissing, events_file, load


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eval_cmd.configure_parser(parser)
    return parser.parse_args(list(argv))


def write_events(path: Path, *, timed: bool, seed: int = 0) -> None:
    """Three groups of users, each on its own items; one JSON event per line."""
    rng = np.random.default_rng(seed)
    lines = []
    n = 0
    for _ in range(8):
        for g in range(3):
            for u in range(15):
                event = {"type": "view", "user_id": f"u{g}-{u}",
                         "item_id": f"i{g}-{int(rng.integers(8))}"}
                if timed:
                    event["ts"] = 1_700_000_000 + n
                lines.append(json.dumps(event))
                n += 1
    path.write_text("\n".join(lines) + "\n")


FAST = ("--factors", "8", "--iterations", "5", "--regularization", "0.1", "--alpha", "10",
        "--no-progress")


@pytest.mark.parametrize("timed", [False, True])
def test_eval_on_an_events_file_writes_json_and_markdown(
    tmp_path: Path, timed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, timed=timed)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    args = parse("--events-file", str(events), "--json", str(out_json),
                 "--markdown", str(out_md), *FAST)
    assert eval_cmd.run(args) == 0
    doc = json.loads(out_json.read_text())
    result = doc["datasets"]["events"]
    assert result["info"]["protocol"] == ("prequential" if timed else "holdout")
    methods = result["methods"]
    assert set(methods) == {"popularity", "knn_cosine", "knn_bm25", "als_full",
                            "als_stream", "blend"}
    assert methods["popularity"]["cases"] > 0
    assert methods["blend"]["hr@10"] >= methods["popularity"]["hr@10"]
    assert doc["settings"]["als"]["factors"] == 8
    assert "blend_ge_best_baseline" in result["acceptance"]
    table = out_md.read_text()
    assert table.startswith("| dataset | method |")
    assert "production blend" in table
    assert "| events |" in capsys.readouterr().out


def test_unknown_method_and_missing_data_fail_cleanly(tmp_path: Path) -> None:
    assert eval_cmd.run(parse("--methods", "magic", "--data-dir", str(tmp_path))) == 2
    assert eval_cmd.run(parse("taobao", "--data-dir", str(tmp_path), *FAST)) == 2
    with pytest.raises(DatasetMissing):
        load("lastfm", tmp_path)
    with pytest.raises(ValueError):
        load("nope", tmp_path)


def test_envelopes_and_missing_ids_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([{"events": [
        {"type": "view", "user_id": "u", "item_id": "a", "ts": 1.0},
        {"type": "view", "user_id": "u", "item_id": "b", "ts": 2.0},
    ]}]))
    ds = events_file(path)
    assert [e["event_id"] for e in ds.events] == ["f0-0", "f0-1"]
    assert ds.plan.protocol == "prequential"


def test_api_shaped_timestamps_give_the_timed_protocol(tmp_path: Path) -> None:
    """Events as POST /v1/events takes them carry an ISO-8601 ``timestamp``, no ``ts``:
    they are timed (prequential, and usable with --via-api), not shuffled into a holdout."""
    path = tmp_path / "api.jsonl"
    path.write_text("\n".join(json.dumps(
        {"type": "view", "user_id": "u", "item_id": f"i{k}",
         "timestamp": f"2026-11-0{k + 1}T10:00:00{'Z' if k else ''}"}) for k in range(3)))
    ds = events_file(path)
    assert ds.plan.protocol == "prequential"
    # 2026-11-01..03 10:00 UTC; a naive timestamp is UTC, as the API reads it
    assert [e["ts"] for e in ds.events] == [1793527200.0, 1793613600.0, 1793700000.0]


@pytest.mark.parametrize(("content", "says"), [
    ("", "no events"),
    ('{"type": "view", "user_id": "u", "item_id": "a"}\ngarbage{\n', "line 2: not JSON"),
    ("[1, 2]", "element 1: an event must be a JSON object"),
    ('{"foo": 1}\n', "line 1: an event needs 'type'"),
    ('{"type": "view", "user_id": "u", "item_id": "a", "ts": "yesterday"}', "'ts'"),
    ('{"type": "view", "user_id": "u", "item_id": "a", "timestamp": "soon"}', "ISO-8601"),
    ("[1, 2", "not a JSON array"),
])
def test_a_garbled_events_file_is_one_clear_line(
        tmp_path: Path, content: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert eval_cmd.run(parse("--events-file", str(path), *FAST)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and says in err, err


def test_acceptance_checks() -> None:
    row = {"ndcg@10": 0.0}
    summary = {
        "popularity": {**row, "ndcg@10": 0.10},
        "knn_cosine": {**row, "ndcg@10": 0.20},
        "blend": {**row, "ndcg@10": 0.25},
        "als_full": {**row, "ndcg@10": 0.20},
        "als_stream": {**row, "ndcg@10": 0.19},
    }
    out = eval_cmd.acceptance(summary)
    assert out["best_baseline"] == "knn_cosine"
    assert out["blend_ge_best_baseline"] is True
    assert out["stream_over_full"] == pytest.approx(0.95)
    assert out["stream_ge_97pct_full"] is False


def test_markdown_table_rows() -> None:
    row = {"hr@10": 0.5, "ndcg@10": 0.25, "ndcg@10_se": 0.01, "recall@20": 0.6,
           "coverage@10": 0.1, "cases": 7}
    table = eval_cmd.markdown_table({"d": {"methods": {"blend": {**row,
                                                                   "update_s_per_event": 1e-4}}}})
    assert table.splitlines()[2] == (
        "| d | production blend | 0.5000 | 0.2500 ± 0.0100 | 0.6000 | 0.1000 | 1.0e-04 | 7 |")
