"""Run every method on one protocol and score it.

Two drivers share the scoring code:

:func:`run_prequential`
    test-then-learn in time order (also used for next-click on sessions, with the session
    as the entity). A backlog before the evaluation period is loaded and trained on, as a
    deployment is bootstrapped; the period is then replayed batch by batch exactly as the
    worker would see it. At each checkpoint the batch-trained baselines (item-kNN,
    full-retrain ALS) are refitted on everything so far; every event inside the
    checkpoint's window is a test case *before* it is learned: its entity must have some
    history and the item must be new to the entity. Each method answers from the state it
    has at that moment: the streaming methods from the state after the previous batch, the
    baselines from their checkpoint fit queried with the entity's history so far.
:func:`run_holdout`
    for data without time: the training events are streamed through the worker (seeded
    order, synthetic clock), the baselines are fitted on the same events, and every
    entity's held-out items are the relevant set of one case.

Every method gets the same exclusion: items the entity already interacted with are never
recommended (a test item is new to its entity by construction).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from recommender.evaluation.baselines import Profiles
from recommender.evaluation.events import Event, stream_batches
from recommender.evaluation.methods import (
    STREAMING,
    Baselines,
    EvalSettings,
    answer,
    costs,
)
from recommender.evaluation.scoring import Captured, RunResult, Tally, score_cases
from recommender.evaluation.worker_sim import StreamSim
from recommender.weights import EVENT_WEIGHTS

Progress = Callable[[int], None]


def _novel_targets(batch: Sequence[Event], profiles: Profiles,
                   keep: Callable[[str], bool] | None) -> dict[str, set[str]]:
    """Items new to their entity, of entities with history, in one batch."""
    targets: dict[str, set[str]] = {}
    for ev in batch:
        if EVENT_WEIGHTS.get(str(ev["type"]), 0.0) <= 0.0:
            continue
        entity, item = str(ev["entity"]), str(ev["item_id"])
        known = profiles.known(entity)
        if not known or item in known or (keep is not None and not keep(entity)):
            continue
        targets.setdefault(entity, set()).add(item)
    return targets


def _learn(batch: Sequence[Event], sim: StreamSim, profiles: Profiles, *, simulate: bool,
           progress: Progress | None) -> None:
    """After a batch was scored: feed it to the worker replay (or only log it when no
    streaming method is evaluated) and to the entity profiles, and report progress."""
    if simulate:
        sim.process(batch)
    else:
        sim.record(batch)
    for ev in batch:
        profiles.add(ev)
    if progress:
        progress(len(batch))


def _replay(settings: EvalSettings, backlog: Sequence[Event], progress: Progress | None
            ) -> tuple[StreamSim, Profiles, bool]:
    """The worker replay and the entity profiles after the backlog (trained on, as a
    deployment is bootstrapped), and whether the replay runs at all (only when a
    streaming method is scored or blend inputs are captured)."""
    sim = StreamSim(settings.stream, settings.als, settings.pool_rows)
    profiles = Profiles(settings.als.decay_half_life_s)
    for ev in backlog:
        profiles.add(ev)
    simulate = settings.capture or any(m in settings.methods for m in STREAMING)
    if simulate:
        sim.load_backlog(backlog)
    else:
        sim.record(backlog)
    if progress:
        progress(len(backlog))
    return sim, profiles, simulate


class _Cases:
    """The tallies (and captured blend inputs) of a run, filled query by query."""

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.tallies = {m: Tally() for m in settings.methods}
        self.captured: list[Captured] = []
        self.count = 0

    def score(self, sim: StreamSim, base: Baselines, profiles: Profiles,
              entities: Sequence[str], relevant: Sequence[list[set[str]]]) -> None:
        """Ask every method for ``entities`` and score one case per relevant set
        (``relevant[j]``: the relevant sets of ``entities[j]``)."""
        s = self.settings
        answers, caps = answer(s, sim, base, profiles, entities, s.capture)
        cases = [(j, rel) for j, sets in enumerate(relevant) for rel in sets]
        score_cases(self.tallies, answers, cases, k=s.k, k_recall=s.k_recall)
        self.count += len(cases)
        for j, cap in enumerate(caps):
            if cap is not None:
                cap.relevant = list(relevant[j])
                self.captured.append(cap)


def run_prequential(
    events: Sequence[Event],
    *,
    start_ts: float,
    end_ts: float,
    checkpoints: Sequence[float],
    window_s: float,
    settings: EvalSettings,
    keep: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Test-then-learn over ``[start_ts, end_ts)`` with windows after each checkpoint.

    Parameters
    ----------
    events
        Prepared events sorted by time (everything before ``start_ts`` is the backlog,
        everything from ``end_ts`` on is ignored).
    start_ts, end_ts
        The evaluation period.
    checkpoints
        Increasing times in the period; the baselines are refitted at each, and events in
        ``[checkpoint, checkpoint + window_s)`` are test cases.
    window_s
        Length of each test window.
    settings
        Methods and knobs.
    keep
        Optional entity filter (seeded subsample of who is evaluated; everyone is learned).
    progress
        Called with the number of events processed after each batch.

    Returns
    -------
    RunResult
        Per-method tallies, costs and protocol facts. Each case is one event: the
        relevant set is ``{item}``.
    """
    backlog = [e for e in events if e["ts"] < start_ts]
    stream = [e for e in events if start_ts <= e["ts"] < end_ts]
    sim, profiles, simulate = _replay(settings, backlog, progress)
    base = Baselines(settings)
    run = _Cases(settings)
    marks = sorted(checkpoints)
    next_mark = 0
    window_end = -np.inf
    for batch in stream_batches(stream, size=settings.stream.batch_size,
                                within_s=settings.stream.batch_within_s):
        now = float(batch[0]["ts"])
        if simulate:
            sim.maybe_retrain(now)
        if next_mark < len(marks) and now >= marks[next_mark]:
            while next_mark < len(marks) and now >= marks[next_mark]:
                window_end = marks[next_mark] + window_s
                next_mark += 1
            base.refit(sim.log, sim)
        if now < window_end:
            targets = _novel_targets(batch, profiles, keep)
            if targets:
                run.score(sim, base, profiles, list(targets),
                          [[{item} for item in items] for items in targets.values()])
        _learn(batch, sim, profiles, simulate=simulate, progress=progress)
    rate = len(stream) / max(end_ts - start_ts, 1e-9)
    catalog = len({e["item_id"] for e in backlog} | {e["item_id"] for e in stream})
    info = {
        "protocol": "prequential", "backlog_events": len(backlog), "stream_events": len(stream),
        "checkpoints": len(marks), "window_s": window_s, "cases": run.count,
        "retrains": sim.retrains, "swept": sim.swept, "events_per_retrain_interval": rate *
        settings.stream.retrain_interval_s,
    }
    cost = costs(settings, sim, base, rate * settings.stream.retrain_interval_s)
    return RunResult(run.tallies, catalog, cost, info, run.captured)


def run_holdout(
    train: Sequence[Event],
    test: Mapping[str, set[str]],
    *,
    settings: EvalSettings,
    events_per_second: float,
    progress: Progress | None = None,
    chunk: int = 256,
) -> RunResult:
    """Stream the training events through the worker, then score every test entity once.

    Parameters
    ----------
    train
        Prepared training events in replay order, with synthetic ``ts`` (see
        :func:`recommender.evaluation.protocols.synthetic_clock`).
    test
        Held-out items per entity.
    settings
        Methods and knobs.
    events_per_second
        The synthetic clock's rate (for cost amortisation).
    progress
        Called with the number of events processed after each batch.
    chunk
        Entities answered per vectorised call.

    Returns
    -------
    RunResult
        One case per entity with held-out items.

    Notes
    -----
    The synthetic clock orders the replay but is not event time, so recency decay is off
    in this protocol whatever the settings say.
    """
    settings = replace(settings, als=replace(settings.als, decay_half_life_s=math.inf))
    sim = StreamSim(settings.stream, settings.als, settings.pool_rows)
    profiles = Profiles(settings.als.decay_half_life_s)
    simulate = settings.capture or any(m in settings.methods for m in STREAMING)
    for batch in stream_batches(train, size=settings.stream.batch_size,
                                within_s=settings.stream.batch_within_s):
        if simulate:
            sim.maybe_retrain(float(batch[0]["ts"]))
        _learn(batch, sim, profiles, simulate=simulate, progress=progress)
    if simulate:
        sim.idle()  # the deployment is idle when it is asked: its sweep has finished
    base = Baselines(settings)
    started = time.perf_counter()
    base.refit(sim.log, sim)
    run = _Cases(settings)
    entities = [e for e in test if test[e] and profiles.known(e)]
    for start in range(0, len(entities), chunk):
        group = entities[start : start + chunk]
        run.score(sim, base, profiles, group,
                  [[set(test[e]) - profiles.known(e)] for e in group])
    catalog = len({e["item_id"] for e in train} | {i for items in test.values() for i in items})
    interval = events_per_second * settings.stream.retrain_interval_s
    info = {
        "protocol": "holdout", "train_events": len(train), "cases": len(entities),
        "retrains": sim.retrains, "swept": sim.swept, "events_per_retrain_interval": interval,
        "scoring_s": time.perf_counter() - started,
    }
    return RunResult(run.tallies, catalog, costs(settings, sim, base, interval), info,
                     run.captured)


def stable_keep(seed: int, fraction: float) -> Callable[[Hashable], bool]:
    """A seeded, order-independent entity subsample: keep ``fraction`` of all entities."""
    if fraction >= 1.0:
        return lambda _e: True

    def keep(entity: Hashable) -> bool:
        digest = hashlib.blake2b(f"{seed}:{entity}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < fraction

    return keep
