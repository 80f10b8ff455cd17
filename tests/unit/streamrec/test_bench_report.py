"""A bench's short report says how to reproduce it: the command as it ran, the JSON."""

from __future__ import annotations

from pathlib import Path

from streamrec.bench.burst_report import burst_table, command_line, reproduce


def test_the_command_is_every_argument_as_given_global_options_too() -> None:
    argv = ["/opt/venv/bin/streamrec", "-v", "bench", "ingest", "--burst", "--out", "a b.json"]
    # argv[3:] after "streamrec bench ingest" made this "streamrec bench ingest ingest ..."
    assert command_line(argv) == "streamrec -v bench ingest --burst --out 'a b.json'"
    assert command_line(["streamrec", "bench", "train", "--runs", "3"]) == (
        "streamrec bench train --runs 3")


def test_the_burst_report_ends_with_the_command_and_the_json() -> None:
    report = {"command": "streamrec bench ingest --burst --events 5000",
              "burst": {"events_per_s": 1254, "lag0_seconds": 3.99,
                        "cpu_us_per_event": {"api": 26}}}
    text = burst_table({"stack": [report]}, {"stack": "Tansu 0.6.0"}) + "\n" + reproduce(
        report, Path("bench-results/ingest.json"))
    assert "| Tansu 0.6.0 |" in text.splitlines()[0]
    assert text.splitlines()[-2:] == ["command: streamrec bench ingest --burst --events 5000",
                                      "JSON: bench-results/ingest.json"]


def test_the_burst_table_shows_the_machines_speed_and_reads_older_reports_without_it() -> None:
    """Each run's fixed-loop time (the machine's speed at that hour) is a row; a report
    from before it was measured shows a dash there."""
    row = "the machine: a fixed Python loop"
    table = burst_table({"a": [{"python_loop_ms": 40.0}, {"python_loop_ms": 50.0}, {}]},
                        {"a": "Tansu"})
    line = next(x for x in table.splitlines() if x.startswith(f"| {row}"))
    assert "45" in line and "40" in line and "50" in line


def test_the_machine_probe_times_its_fixed_loop() -> None:
    from streamrec.bench.machine import python_loop_ms

    assert python_loop_ms(repeats=1) > 0


def test_the_burst_table_shows_the_held_rates_cpu_per_event_by_process() -> None:
    """The held rate's headroom: CPU µs per held event of each process while the events
    arrive, and of the re-folds that waited past the hold; older reports show dashes."""
    held = {"freshness": {"cpu_us_per_event": {"workers": 425, "redis": 150},
                          "refold_cpu_us_per_event": {"workers": 300}}}
    lines = burst_table({"a": [held, {"freshness": {}}]}, {"a": "Tansu"}).splitlines()
    workers = next(x for x in lines if x.startswith("| CPU µs per event, held rate: workers"))
    assert "425" in workers
    refold = next(x for x in lines if "waiting re-folds after the hold: workers" in x)
    assert "300" in refold
    redis_refold = next(x for x in lines if "waiting re-folds after the hold: Redis" in x)
    assert redis_refold.endswith("| **-** (-, -) |")


def test_the_burst_table_shows_the_held_rate_seen_from_outside() -> None:
    """The outside probes' p50 and p99 beside the workers' histogram; reports from before
    the probes show dashes."""
    probed = {"freshness": {"p99_ms": 180.0, "outside": {"samples": 110, "p50_ms": 48.5,
                                                         "p99_ms": 171.0, "errors": 0}}}
    lines = burst_table({"a": [probed, {"freshness": {}}]}, {"a": "Tansu"}).splitlines()
    p50 = next(x for x in lines if x.startswith("| freshness p50 at the held rate from outside"))
    p99 = next(x for x in lines if x.startswith("| freshness p99 at the held rate from outside"))
    assert "48.5" in p50 and "171" in p99
