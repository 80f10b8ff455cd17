"""The heartbeat's events/s (stream.state.RateWindow): what `streamrec status --json` and
the dashboard both show as ``events_per_s``."""

from __future__ import annotations

from stream.state import RateWindow


def test_rate_over_the_last_window() -> None:
    rate = RateWindow(window_s=10.0)
    assert rate.rate(100.0, 0) == 0.0  # one sample: no rate yet
    assert rate.rate(102.0, 50) == 25.0
    assert rate.rate(104.0, 150) == 37.5  # (150 - 0) / 4 s
    for t in range(106, 122, 2):
        last = rate.rate(float(t), 150 + 10 * (t - 104))
    # Only the last ~10 s count: 10 events/s, whatever came before.
    assert last == 10.0


def test_idle_and_reset_counters_give_zero() -> None:
    rate = RateWindow(window_s=4.0)
    rate.rate(0.0, 100)
    for t in (2.0, 4.0, 6.0, 8.0):
        idle = rate.rate(t, 200)
    assert idle == 0.0  # nothing processed in the last window
    assert rate.rate(10.0, 5) == 0.0  # a counter that went down (a restart) is no rate
