"""When the worker's scheduled retrain is due: grown log, minimum gap.

A full retrain reads the whole ``events`` log, so what it has seen is the log's end
offsets when it read them, not the events the worker had processed by then: during a
backlog the log is far ahead of processing, and counting processed events retrained the
same data again and again (three retrains on one 100,000-event log in a minute, issue
14). The retrain records the end offset of every partition it read up to; a scheduled
retrain is due only once the log's end offsets have grown by the growth share since
(:func:`log_growth`, :func:`recommender.refresh.grown`), and never sooner than a minimum
gap after the last retrain (:func:`retrain_due`); a due retrain waits while the worker is
behind, at most :data:`POSTPONE_MAX_S` (:func:`postponed`).

Pure: plain numbers in, a decision out.
"""

from __future__ import annotations

from collections.abc import Mapping

from recommender.refresh import grown

__all__ = ["CATCH_UP_SETTLE_S", "POSTPONE_MAX_S", "catching_up", "log_growth", "postponed",
           "retrain_due"]

#: Longest a due retrain waits for the worker to catch up (see :func:`postponed`).
POSTPONE_MAX_S = 600.0
#: How long after its last step that found a backlog a worker still counts as catching
#: up: a burst's last steps find none (what is left fits in a step) while their batch
#: still takes seconds, and a retrain started there took a core from the burst's tail.
CATCH_UP_SETTLE_S = 5.0


def log_growth(ends: Mapping[int, int], trained: Mapping[int, int]) -> tuple[int, int]:
    """``(new messages, messages trained on)``: the messages appended to each partition
    since the end offsets ``trained`` the last retrain read (a partition that went back,
    e.g. a re-created topic, adds nothing), and the total it read.

    Parameters
    ----------
    ends
        Partition → end offset of the log now.
    trained
        Partition → end offset the last retrain read up to.
    """
    new = sum(max(0, end - trained.get(part, 0)) for part, end in ends.items())
    return new, sum(trained.values())


def retrain_due(*, ends: Mapping[int, int], trained: Mapping[int, int], trained_at: float,
                now: float, growth: float, min_gap_s: float, interval_s: float,
                attempted_at: float = 0.0) -> bool:
    """Whether a scheduled retrain should start now.

    Never within ``min_gap_s`` of the last retrain (``trained_at``) nor of the end of the
    last scheduled attempt (``attempted_at``), whatever it came to: one that published
    nothing (too few usable events, a crash) read the whole log all the same, and it
    would otherwise start again at the next tick on the same log. Never on a log
    that has not grown by ``growth`` (its share of the messages the last retrain read)
    since then. With ``growth`` 0 (the growth trigger off) a retrain is due every
    ``interval_s`` once the log grew at all.

    Parameters
    ----------
    ends, trained
        End offsets per partition now and when the live model's retrain read the log.
    trained_at, now
        Epoch seconds of the last retrain and now.
    attempted_at
        Epoch seconds when the worker's last scheduled retrain ended (0: none yet).
    growth
        ``Settings.retrain_growth``.
    min_gap_s
        ``Settings.retrain_min_gap_s``.
    interval_s
        ``Settings.retrain_interval_s`` (only with ``growth`` 0).
    """
    age = now - trained_at
    if age < min_gap_s or now - attempted_at < min_gap_s:
        return False
    new, read = log_growth(ends, trained)
    if growth > 0:
        return grown(new, read, growth)
    return new > 0 and age >= interval_s


def catching_up(*, behind: bool, behind_at: float | None, now: float) -> bool:
    """Whether the worker counts as behind for its retrain (and tells the group so in
    its heartbeat): its last step found a backlog (``behind``), or one did less than
    :data:`CATCH_UP_SETTLE_S` ago (``behind_at``, ``now``: one monotonic clock)."""
    return behind or (behind_at is not None and now - behind_at < CATCH_UP_SETTLE_S)


def postponed(*, behind: bool, due_since: float, now: float) -> bool:
    """Whether a due retrain should wait: while the worker is behind the log, a retrain
    would train on events it has not applied yet and take CPU from the catch-up (a burst
    of 100,000 events drained 40 % faster without one; its lists are rebuilt on the new
    model by the refresh sweep anyway). At most :data:`POSTPONE_MAX_S` after it became
    due, so a worker that never catches up still gets new models.

    Parameters
    ----------
    behind
        The worker's last step found a backlog (``Settings.coalesce_backlog``).
    due_since, now
        When the retrain first became due, and now, in seconds of one clock (the
        worker's monotonic one: a wall clock stepped back would stretch the wait).
    """
    return behind and now - due_since < POSTPONE_MAX_S
