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


@pytest.mark.parametrize("methods", ["", ",", " , "])
def test_methods_naming_no_method_fail_cleanly(
        methods: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, timed=False)
    # "," printed an empty table and exited 0; "" ran every method
    assert eval_cmd.run(parse("--events-file", str(events), "--methods", methods, *FAST)) == 2
    captured = capsys.readouterr()
    assert "names no method" in captured.err and captured.out == ""


@pytest.mark.parametrize("flag", ["--json", "--markdown"])
def test_an_output_that_cannot_be_written_fails_before_the_run(
        flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    write_events(events, timed=False)
    for out, said in ((tmp_path / "no" / "such" / "r.out", "no such directory"),
                      (tmp_path, "is a directory")):
        # was a FileNotFoundError/IsADirectoryError traceback after the whole evaluation
        assert eval_cmd.run(parse("--events-file", str(events), flag, str(out), *FAST)) == 2
        captured = capsys.readouterr()
        assert said in captured.err and "Traceback" not in captured.err
        assert captured.out == ""


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
    ('{"type": "like", "user_id": "u", "item_id": "a"}', "line 1: unknown event type 'like'"),
    ('{"type": "view", "user_id": {"id": 1}, "item_id": "a"}', "'user_id': an id must be"),
    ('{"type": "view", "user_id": "u", "item_id": ["a"]}', "'item_id': an id must be"),
    ('{"type": "view", "user_id": "u", "item_id": "a\\u0000"}', "'item_id': an id must not"),
    ('{"type": "view", "user_id": "u", "item_id": "' + "x" * 257 + '"}', "at most 256"),
    ('{"type": "purchase", "user_id": "u", "item_id": "a", "quantity": 0}', "'quantity'"),
    ('{"type": "purchase", "user_id": "u", "item_id": "a", "quantity": 1.5}', "'quantity'"),
    ('{"type": "view", "user_id": "u", "item_id": "a", "ts": true}', "'ts'"),
    ('{"type": "view", "user_id": "u", "item_id": "a", "ts": 1e300}', "'ts'"),
    ('{"type": "view", "user_id": "u", "item_id": "a", "ts": -5}', "'ts'"),
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


def test_an_unreadable_or_missing_events_file_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not UTF-8, a directory, no such file: one line naming the file, exit 2; a file of
    the user's own is not a shared dataset, so the line does not send them to its README."""
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(b'{"type": "view", "user_id": "J\xf6rg", "item_id": "a"}\n')
    for path, says in ((binary, "not UTF-8"), (tmp_path, "cannot read"),
                       (tmp_path / "nope.jsonl", "no such events file")):
        assert eval_cmd.run(parse("--events-file", str(path), *FAST)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and says in err, err
        assert "shared/data" not in err


@pytest.mark.parametrize("content", [
    '{"type": "view", "user_id": "u", "item_id": "a"}\n',  # untimed: nobody to hold out
    '{"type": "view", "user_id": "u", "item_id": "a", "ts": 1}\n'
    '{"type": "view", "user_id": "v", "item_id": "b", "ts": 9}\n',  # timed: no case
])
def test_data_too_small_to_split_fails_in_one_line_instead_of_a_table_of_zeros(
        tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A run without one test case used to print an all-zero table, exit 0 and report
    the blend as beating the baselines."""
    path = tmp_path / "tiny.jsonl"
    path.write_text(content)
    out_json = tmp_path / "r.json"
    assert eval_cmd.run(parse("--events-file", str(path), "--json", str(out_json), *FAST)) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "no test cases" in captured.err, captured.err
    assert "blend" not in captured.out and not out_json.exists()


def test_the_json_report_is_strict_json_when_a_ratio_is_undefined(tmp_path: Path) -> None:
    """One case and no hit: fold-in ÷ full retrain is 0/0; the report says null, not the
    ``NaN`` that JSON parsers other than Python's refuse."""
    path = tmp_path / "one_case.jsonl"
    path.write_text("\n".join(json.dumps(
        {"type": "view", "user_id": "u", "item_id": item, "ts": ts})
        for item, ts in (("a", 1), ("b", 9))) + "\n")
    out_json = tmp_path / "r.json"
    assert eval_cmd.run(parse("--events-file", str(path), "--json", str(out_json), *FAST)) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON report")

    doc = json.loads(out_json.read_text(), parse_constant=refuse)
    result = doc["datasets"]["one_case"]
    assert result["methods"]["als_full"]["cases"] == 1
    assert result["acceptance"]["stream_over_full"] is None


@pytest.mark.parametrize("argv", [
    ("--user-fraction", "0"), ("--user-fraction", "-1"), ("--user-fraction", "nan"),
    ("--user-fraction", "1.5"), ("--checkpoints", "0"), ("--checkpoints", "-2"),
    ("--checkpoints", "1000000000"), ("--seed", "-1"), ("--max-users", "0"),
    ("--factors", "-3"), ("--factors", "0"), ("--iterations", "-1"),
    ("--regularization", "nan"), ("--regularization", "-1"), ("--alpha", "0"),
    ("--alpha", "inf"),
])
def test_out_of_range_options_are_refused_by_argparse(
        argv: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each used to run: a traceback (negative factors, NaN regularization), a run that
    scored nothing (a fraction of 0, negative checkpoints) or silently the default (0
    factors, 0 checkpoints)."""
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_prequential_only_options_on_untimed_data_are_named_as_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--user-fraction and --checkpoints shape only the timed protocols; on a holdout
    (Last.fm, any untimed file) they did nothing, silently, while the docs offered them
    for a quicker look."""
    events = tmp_path / "untimed.jsonl"
    write_events(events, timed=False)
    args = parse("--events-file", str(events), "--user-fraction", "0.5", "--checkpoints",
                 "2", "--methods", "popularity", *FAST)
    assert eval_cmd.run(args) == 0
    err = capsys.readouterr().err
    assert "note: untimed has no time order" in err
    assert "--user-fraction and --checkpoints: for timed data only, ignored" in err


def test_options_the_chosen_run_does_not_read_are_named_as_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-users shapes only --via-api, and --via-api runs the stack with its own
    settings: each combination used to run to the end (a Taobao run through the API takes
    minutes) and silently drop the option."""
    events = tmp_path / "timed.jsonl"
    write_events(events, timed=True)
    args = parse("--events-file", str(events), "--max-users", "5", "--methods",
                 "popularity", *FAST)
    assert eval_cmd.run(args) == 0
    assert "note: --max-users: for --via-api only, ignored" in capsys.readouterr().err
    via = parse("taobao", "--via-api", "--split", "validation", "--methods", "blend",
                "--iterations", "10", "--checkpoints", "3")
    notes = eval_cmd.ignored_options(via)
    assert notes == ["--split validation, --methods, --checkpoints and --iterations: "
                     "--via-api scores the test period with the stack's own settings "
                     "(STREAMREC_* variables), ignored"]
    assert eval_cmd.ignored_options(parse("taobao", "--via-api", "--max-users", "9")) == []
    # --tune ran its search of many minutes and silently dropped these (no markdown file)
    tune = parse("taobao", "--tune", "als", "--via-api", "--markdown", "t.md",
                 "--user-fraction", "0.5")
    assert eval_cmd.ignored_options(tune) == [
        "--via-api, --markdown, --user-fraction: --tune als searches the validation split "
        "(results on stdout and in --json), ignored"]
    assert eval_cmd.ignored_options(parse("--tune", "blend", "--user-fraction", "0.5")) == []


def test_via_api_reads_each_id_as_one_encoded_path_segment() -> None:
    """``GET /v1/users/g0?q#1/recommendations`` was a 405 (and ``a/b`` a 404): the ids of
    an events file are any text, as the API's are."""
    import httpx

    from core.settings import Settings
    from streamrec.eval.via_api import fetch_lists

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"items": [{"item_id": "i1"}]})

    users = ["a/b", "g0?q#1", "..", "plain"]
    with httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)) as client:
        lists = fetch_lists(client, Settings(), users, 10)
    assert lists == {u: ["i1"] for u in users}
    assert seen == ["/v1/users/a%2Fb/recommendations?n=10",
                    "/v1/users/g0%3Fq%231/recommendations?n=10",
                    "/v1/users/%2E%2E/recommendations?n=10",
                    "/v1/users/plain/recommendations?n=10"]


def test_a_via_api_run_that_fails_is_one_line_and_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No API within the wait, a refused POST, a pipeline that never drains or a failed
    ``streamrec train`` printed a RuntimeError traceback."""
    from streamrec.eval import via_api

    def fails(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("streamrec train failed: no events")

    monkeypatch.setattr(via_api, "run_via_api", fails)
    events = tmp_path / "timed.jsonl"
    write_events(events, timed=True)
    assert eval_cmd.run(parse("--events-file", str(events), "--via-api", "--no-progress")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["streamrec eval: --via-api on timed: streamrec train failed: no events"]
