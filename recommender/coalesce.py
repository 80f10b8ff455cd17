"""Coalesced list refreshes: while the worker is behind, or has re-folds queued, each
entity's list re-fold waits and is done once, from its latest history, for all its events.

Re-folding an entity's list (fold-in, ranking, blend: a few hundred µs) is most of what an
event costs the worker. During a burst, a backfill or a replay most entities have several
events waiting, and every list but the last one written for them is thrown away unread;
in a steady stream of many shoppers (each event another one's) the re-folds alone can
cost more than the worker has. A batch already re-folds each of its entities once;
:class:`Coalescer` carries that across batches: their histories, counts, recent items and
first-level lists (``recommender.blend_quick``) are still written batch by batch, only the
re-folds wait, oldest first: a batch takes at most ``per_batch`` of them, those that
waited ``max_delay_s`` first and, only while the worker has time to spare
(:class:`SpareTime`), the oldest of the others (the rest between batches, when idle);
a batch's own entities join the queue behind those already waiting, so a lone event
after idle (nothing queued) is re-folded at once. The bound
holds for the due ones too: re-folds come due in waves (a shift of traffic defers
thousands of shoppers within seconds, and they come due together ``max_delay_s``
later), and a wave taken at once stalled the batch that took it and every first-level
list behind it. So ``max_delay_s`` is the wait of a worker that keeps up; one that
cannot re-folds ``per_batch`` per batch, its batches grow with the backlog (fewer
re-folds per second), the waits grow, and each re-fold covers more events: the re-folds
adapt to what is left of the worker's time, the first level stays current. An entity's
waiting events keep their receive times (the oldest :data:`WAITING_TIMES`), so the
re-fold delay they are reported with includes the wait.

Pure: plain containers, no I/O. The worker keeps the waiting entities in Redis too
(``RedisKeys.relist_pending``), so a worker that stops with lists waiting leaves them for
the next owner of their partition (:meth:`Coalescer.restore`). A step Redis failed
before its write was sent never sent its new deferrals' ``ZADD`` either: they stay
waiting here and are re-folded here like every waiting entity, unmirrored. Only a
handover inside that wait loses their full re-fold (the list stays at the first level until the
entity's next event); mirroring them with a later write would mean tracking them in the
processor until then, for a loss that small: the list is never wrong, only less fresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping

__all__ = ["BUSY_FULL", "DUE_FLOOR", "DUE_FLOOR_PER_S", "IDLE_AFTER_S", "SPARE_BELOW",
           "WAITING_TIMES", "Coalescer", "SpareTime"]

#: Receive times kept per waiting entity (the oldest: its longest waits), so one shopper's
#: stream of events cannot grow the queue's memory while its re-fold waits; the events
#: beyond it report no re-fold delay sample.
WAITING_TIMES = 32
#: Share of the wall clock the worker's batches take under which re-folds that are not
#: due yet are taken early (:class:`SpareTime`).
SPARE_BELOW = 0.5
#: Weight of the newest batch in :attr:`SpareTime.busy_share` (a mean over ~5 batches).
BUSY_WEIGHT = 0.2
#: Seconds after a batch ended with none begun since: the worker counts as idle.
IDLE_AFTER_S = 0.5
#: Busy share at and above which due re-folds are taken only at the floor rate
#: (:data:`DUE_FLOOR_PER_S`).
BUSY_FULL = 0.7
#: Due re-folds per second a worker takes however busy it is (they still make progress),
#: in groups of :data:`DUE_FLOOR`.
DUE_FLOOR_PER_S = 20.0
#: Due re-folds taken together, from the floor rate or the ramp: a batch takes none until
#: a group's worth has accrued. A re-fold's fold-in and ranking have a cost per call:
#: taken one per batch (the floor rate at 20 batches a second) each cost ~3.7 ms of the
#: worker's CPU, ~0.9 ms in the idle timer's groups of 64 (py-spy of the held rate's
#: second half, 2026-12-07), and the extra ~6 % of a core per worker tipped a 2-core box
#: at 2,000 events/s into a backlog (batches 35 → 90-175 ms, freshness p99 0.9-1.6 s).
DUE_FLOOR = 16


class Coalescer:
    """The entities whose list rebuild waits, oldest first.

    Parameters
    ----------
    max_delay_s
        Longest an entity's re-fold waits, unless the idle timer's groups hold it
        (``Settings.coalesce_max_delay_s``; 0 turns coalescing off).
    per_batch
        Most waiting entities re-folded by one batch, due or not (the worker's
        ``stream.relister.IDLE_GROUP``: a bound on what the re-folds add to the batch's
        own latency, i.e. to its events' first freshness level).
    """

    def __init__(self, max_delay_s: float, per_batch: int) -> None:
        self.max_delay_s = max(max_delay_s, 0.0)
        self.per_batch = max(per_batch, 1)
        #: entity -> (first deferral time, receive times of its events waiting)
        self._waiting: OrderedDict[str, tuple[float, list[float]]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether lists may wait at all."""
        return self.max_delay_s > 0

    @property
    def pending(self) -> int:
        """Entities waiting for their list."""
        return len(self._waiting)

    def defer(self, received: Mapping[str, Iterable[float]], now: float) -> list[str]:
        """Let these entities' lists wait (``received``: entity → receive times of its
        events in the batch); returns those that were not waiting yet."""
        new: list[str] = []
        for entity, times in received.items():
            found = self._waiting.get(entity)
            if found is None:
                self._waiting[entity] = (now, list(times)[:WAITING_TIMES])
                new.append(entity)
            elif len(found[1]) < WAITING_TIMES:
                found[1].extend(times)
                del found[1][WAITING_TIMES:]
        return new

    def take(self, *, now: float, behind: bool, skip: Collection[str] = (),
             most: int | None = None) -> dict[str, list[float]]:
        """The waiting entities to rebuild now, with their waiting receive times, oldest
        first, at most ``per_batch`` (``most``: the idle timer's groups): those that
        waited ``max_delay_s``, and unless ``behind`` the oldest of the others too.
        ``skip`` (the batch's own entities, rebuilt anyway) are taken too, beyond the
        bound, so their receive times are reported with this batch."""
        out: dict[str, list[float]] = {}
        for entity in skip:
            found = self._waiting.pop(entity, None)
            if found is not None:
                out[entity] = found[1]
        budget = self.per_batch if most is None else most
        while self._waiting and budget > 0:
            entity, (since, times) = next(iter(self._waiting.items()))
            if behind and now - since < self.max_delay_s:
                break  # oldest first: every later one waited less
            del self._waiting[entity]
            out[entity] = times
            budget -= 1
        return out

    def give_back(self, taken: Mapping[str, list[float]], now: float) -> None:
        """Entities :meth:`take` answered whose re-fold was not written after all (Redis
        failed the step, which the worker tries again): first in the queue and due, with
        their receive times, so the next try takes them."""
        for entity, times in reversed(list(taken.items())):
            found = self._waiting.pop(entity, None)
            self._waiting[entity] = (now - self.max_delay_s,
                                     (times + found[1])[:WAITING_TIMES] if found else times)
            self._waiting.move_to_end(entity, last=False)

    def restore(self, entities: Iterable[str], now: float) -> None:
        """Entities a previous owner left waiting (receive times unknown)."""
        for entity in entities:
            self._waiting.setdefault(entity, (now, []))

    def forget(self) -> list[str]:
        """Drop every waiting entity (their partitions moved to another worker, which
        restores them); returns them."""
        out = list(self._waiting)
        self._waiting.clear()
        return out


class SpareTime:
    """Whether the worker has time to spare for re-folds that are not due yet.

    A steady stream of many shoppers can keep a worker busy without ever putting it
    ``coalesce_backlog`` events behind: taking the oldest waiting re-folds with every
    batch and between batches (a few hundred µs each) then lengthened every batch, and
    with it the wait of every event's first-level list (at 2,000 events/s of 20,000
    shoppers: p50 ~200-350 ms, batches back to back). Waiting re-folds are taken early
    only while the batches take less than :data:`SPARE_BELOW` of the wall clock (a mean
    over the last few: each batch's time over the time from its start to the next one's),
    or once :data:`IDLE_AFTER_S` passed since the last batch ended. Due ones are taken
    fewer the busier the worker (:meth:`due_budget`): at 2,000 events/s the first-level
    lists alone took ~80 % of the worker's wall clock, and 64 due re-folds a batch (the
    wave ``coalesce_max_delay_s`` after a rise in traffic) tipped it over: batches grew
    from ~100 ms to ~700 ms and every event's first change waited with them. Their
    delay grows instead while the worker has no time for them. Beyond :data:`BUSY_FULL`
    they are taken at a rate, not per batch: with a floor of 4 a batch and the ramp
    ending at 90 %, two workers at 1,000 events/s each (~20 batches a second) went from
    ~70 % to ~93 % busy once re-folds came due, their median batch age from 15 to
    ~100 ms. Fewer than :data:`DUE_FLOOR` are never taken at once (a re-fold alone costs
    ~4 times one in a group). Times are the caller's (a monotonic clock); no batch seen
    yet: time to spare.
    """

    def __init__(self) -> None:
        #: Mean share of the wall clock the recent batches took.
        self.busy_share = 0.0
        self._began: float | None = None
        self._ended: float | None = None
        #: Due re-folds the floor rate allows now (up to two :data:`DUE_FLOOR` groups),
        #: and when.
        self._floor = float(DUE_FLOOR)
        self._floor_at: float | None = None

    def began(self, now: float) -> None:
        """A batch begins: the one before it (its time over the time to this start)
        joins the mean."""
        if self._began is not None and self._ended is not None and now > self._began:
            share = min(1.0, (self._ended - self._began) / (now - self._began))
            self.busy_share += BUSY_WEIGHT * (share - self.busy_share)
        self._began, self._ended = now, None

    def ended(self, now: float) -> None:
        """The batch that began last is done."""
        if self._began is not None:
            self._ended = now

    def due_budget(self, most: int, now: float) -> int:
        """Due re-folds a batch may take: ``most`` while the worker has time to spare,
        fewer as its busy share rises to :data:`BUSY_FULL`; below a group
        (:data:`DUE_FLOOR`), a group once the floor rate (:data:`DUE_FLOOR_PER_S`) has
        granted one (then spent), else none."""
        if self._floor_at is not None:  # up to two groups: none lost between batches
            self._floor = min(2.0 * DUE_FLOOR,
                              self._floor + (now - self._floor_at) * DUE_FLOOR_PER_S)
        self._floor_at = now
        if self.busy_share <= SPARE_BELOW:
            return most
        room = max(0.0, (BUSY_FULL - self.busy_share) / (BUSY_FULL - SPARE_BELOW))
        group = min(most, DUE_FLOOR)
        ramp = min(most, int(most * room))
        if ramp >= group:
            return ramp
        if self._floor < group - 1e-9:  # a group not granted yet (float residue aside)
            return 0
        self._floor = max(0.0, self._floor - group)
        return group

    def spare(self, now: float) -> bool:
        """True while re-folds that are not due may be taken."""
        idle = self._ended is not None and now - self._ended >= IDLE_AFTER_S
        return self._began is None or idle or self.busy_share < SPARE_BELOW
