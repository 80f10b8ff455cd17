"""`streamrec load` on files that are not clean datasets: bad lines are left out and named,
a file that cannot be loaded at all is refused with one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.cli import main
from streamrec.ops.load import read_events
from streamrec.ops.load_formats import BadLines


@pytest.fixture(autouse=True)
def clean_env(no_stack: None) -> None:
    """Every test here runs in :func:`tests.unit.streamrec.conftest.no_stack`."""


@pytest.mark.parametrize(("content", "code", "said"), [
    (None, 2, "no such file"),
    ("", 2, "is empty"),
    ("user_id,item_id,category_id,behavior,ts\n", 1, "no events in"),
    ("1,2,3,pv,99999999999999999999\n", 1, "out of range"),
    ("[1, 2]\n", 1, "not an event object"),
])
@pytest.mark.parametrize("via", ["api", "kafka"])
def test_a_file_without_events_is_one_line_and_non_zero(
        content: str | None, code: int, said: str, via: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ("data.jsonl" if content and content.startswith("[") else "data.csv")
    if content is not None:
        path.write_text(content)
    assert main(["load", str(path), "--via", via]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["data.jsonl", "data.csv", "user_artists.dat"])
@pytest.mark.parametrize("content", ["", "\ufeff", "\n \r\n\t\n"])
def test_an_empty_file_cannot_be_loaded_at_all(name: str, content: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file is refused as one that cannot be loaded at all (docs/operations.md:
    exit code 2) whatever its name says: an empty .jsonl, whose format the name tells,
    used to end with code 1 as a file whose lines were all left out."""
    path = tmp_path / name
    path.write_text(content)
    assert main(["load", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and len(err.strip().splitlines()) == 1, err


def test_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--batch=0", "--batch=x", "--concurrency=0", "--limit=-1"])
def test_unbounded_options_are_refused(option: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3,pv,1511658000\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["load", str(path), option])
    assert exit_info.value.code == 2
    assert "argument" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["foo", "localhost:8000", "ftp://host"])
def test_an_api_url_without_http_is_one_line_and_exit_2(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3,pv,1511658000\n")
    with pytest.raises(SystemExit) as exit_info:  # was a ValueError traceback, exit 1
        main(["load", str(path), "--api-url", url])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("streamrec load: error: argument --api-url:") and "http://" in last


def test_more_than_the_api_takes_per_request_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3,pv,1511658000\n")
    assert main(["load", str(path), "--batch", "501"]) == 2
    assert "at most 500" in capsys.readouterr().err


def test_the_per_request_bound_is_the_apis_own_not_a_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``core.limits`` is the one place of the batch bound: the tool follows it."""
    monkeypatch.setattr("core.limits.MAX_BATCH_EVENTS", 7)
    path = tmp_path / "data.csv"
    path.write_text("1,2,3,pv,1511658000\n")
    assert main(["load", str(path), "--batch", "8"]) == 2
    assert "at most 7" in capsys.readouterr().err


def test_bad_lines_are_left_out_and_named(tmp_path: Path) -> None:
    path = tmp_path / "tb.csv"
    path.write_text("1,10,5,pv,1511658000\nbad line\n1,11,5,zzz,1511658001\n"
                    "1,12,5,pv,soon\n1,13,5,pv,nan\n1,14,5,pv,-5\n,15,5,pv,1511658002\n"
                    "2,16,5,buy,1511658003\n")
    bad = BadLines()
    events = list(read_events(path, bad=bad))
    assert [e["item_id"] for e in events] == ["10", "16"]
    assert bad.count == 6
    assert [x.split(":")[0] for x in bad.examples] == [f"line {n}" for n in range(2, 7)]
    assert "unknown behavior 'zzz'" in bad.summary() and "..." in bad.summary()


def test_jsonl_lines_the_api_would_refuse_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "ev.jsonl"
    lines = ['{"type": "view", "user_id": "u1", "item_id": "a"}', "not json", "[1]",
             '{"type": "teleport", "user_id": "u1", "item_id": "a"}',
             '{"type": "view", "user_id": "u1", "item_id": "a", "timestamp": "garbage"}',
             '{"type": "view", "user_id": "u1", "item_id": "a", "ts": 1e300}',
             '{"type": "view", "user_id": "u1", "item_id": "a", "ts": "1"}',
             '{"type": "view", "user_id": "u1", "item_id": "a", '
             '"timestamp": "2999-01-01T00:00:00Z"}',
             '{"type": "view", "user_id": "u2", "item_id": "b", "event_id": null, '
             '"timestamp": "2017-11-26T01:00:00"}']
    path.write_text("\n".join(lines) + "\n")
    bad = BadLines(keep=10)
    events = list(read_events(path, bad=bad))
    assert [e["user_id"] for e in events] == ["u1", "u2"]
    assert events[1]["event_id"] == "ev.jsonl:9"  # a null id gets the file's, not a random one
    assert events[1]["ts"] == 1511658000.0  # a naive timestamp is UTC, as the API reads it
    assert [x.split(":")[0] for x in bad.examples] == [f"line {n}" for n in range(2, 9)]


def test_byte_order_mark_and_crlf_are_plain_text(tmp_path: Path) -> None:
    csv_path = tmp_path / "tb.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf1,10,5,pv,1511658000\r\n2,11,5,buy,1511658001\r\n")
    jsonl = tmp_path / "ev.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"type": "view", "user_id": "u1", "item_id": "a"}\r\n')
    yc = tmp_path / "yoochoose.txt"
    yc.write_bytes(b"\xef\xbb\xbfSessionId\tItemId\tTime\r\n3\t21\t1396437466.5\r\n")
    bad = BadLines()
    assert [(e["user_id"], e["item_id"]) for e in read_events(csv_path, bad=bad)] == [
        ("1", "10"), ("2", "11")]
    assert [e["user_id"] for e in read_events(jsonl, bad=bad)] == ["u1"]
    assert [e["anonymous_id"] for e in read_events(yc, bad=bad)] == ["yc-3"]
    assert bad.count == 0


def test_identify_and_forget_lines_say_where_they_belong(tmp_path: Path) -> None:
    """A JSONL line of type identify or forget (requests of API.md, not tracking events)
    was left out as if its type were a typo ("Input should be 'view', ..."): the reason
    now names the request that takes it."""
    path = tmp_path / "ev.jsonl"
    path.write_text('{"type": "identify", "anonymous_id": "a1", "user_id": "u1"}\n'
                    '{"type": "forget", "user_id": "u2"}\n'
                    '{"type": "view", "user_id": "u1", "item_id": "a"}\n')
    bad = BadLines(keep=10)
    assert [e["type"] for e in read_events(path, bad=bad)] == ["view"]
    first, second = bad.examples
    assert "'identify' is not a tracking event" in first and "POST /v1/identify" in first
    assert "'forget' is not a tracking event" in second and "DELETE /v1/users/" in second


def test_jsonl_timestamps_the_api_accepts_are_loaded(tmp_path: Path) -> None:
    """A JSONL line in the ``POST /v1/events`` form whose ``timestamp`` is epoch seconds
    (a number, or digits in a string) is an event the API accepts with 202: ``load`` used
    to leave every such line out as "not ISO-8601"."""
    path = tmp_path / "ev.jsonl"
    lines = ['{"type": "view", "user_id": "u1", "item_id": "a", "timestamp": 1700000000}',
             '{"type": "view", "user_id": "u2", "item_id": "a", "timestamp": 1700000000.5}',
             '{"type": "view", "user_id": "u3", "item_id": "a", "timestamp": "1700000001"}',
             '{"type": "view", "user_id": "u4", "item_id": "a", "timestamp": true}',
             '{"type": "view", "user_id": "u5", "item_id": "a", "timestamp": [1]}']
    path.write_text("\n".join(lines) + "\n")
    bad = BadLines(keep=10)
    events = list(read_events(path, bad=bad))
    assert [(e["user_id"], e["ts"]) for e in events] == [
        ("u1", 1700000000.0), ("u2", 1700000000.5), ("u3", 1700000001.0)]
    assert [x.split(":")[0] for x in bad.examples] == ["line 4", "line 5"]


def test_an_api_that_does_not_answer_is_one_line_up_front(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As `--via kafka` does for the broker: the client's retries took ~45 s, then the
    failure was printed twice (the client's log line and the command's)."""
    from core.net import free_port

    path = tmp_path / "data.csv"
    path.write_text("1,2,3,pv,1511658000\n")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["load", str(path), "--api-url", url]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"streamrec load: cannot reach the API at {url}: run `streamrec "
                           "up`, or pass --api-url")
