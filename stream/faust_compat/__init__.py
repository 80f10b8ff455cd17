"""Everything streamrec changes in, or reads from, Faust's and aiokafka's internals.

One package, so a Faust upgrade has one place to re-check:

:mod:`~stream.faust_compat.versions`
    the library versions every patch was checked against; :func:`install` refuses any
    other (override: ``STREAMREC_FAUST_COMPAT_UNSAFE=1``, unsafe).
:mod:`~stream.faust_compat.commit_safety`
    three fixes so an offset is committed only after its message was processed.
:mod:`~stream.faust_compat.fetch_wait`
    the consumer's fetch long-poll wait (Faust fixes it at 1.5 s; Tansu holds fetches
    that long).
:mod:`~stream.faust_compat.producer_ebb`
    how many changelog records may wait before Faust stops delivering messages (its 100
    kept a backlog's batches at 1-4 messages).
:mod:`~stream.faust_compat.recovery_ends`
    where table recovery stops reading a changelog (Tansu answers ListOffsets low: the
    worker reads the fetch high watermark there).
:mod:`~stream.faust_compat.stop_in_outage`
    a worker stopped while Kafka is away stops instead of hanging (aiokafka's fetcher
    close raised the cancellation it asked for).
:mod:`~stream.faust_compat.send_errors`
    a send Kafka refused is handled by the worker's sensor, not left to asyncio's "Future
    exception was never retrieved" (Faust sets it on a future nobody awaits).
:mod:`~stream.faust_compat.restored_values`
    the form a table stores a value its changelog recovery restores in (the history
    table's tuples: ``stream.history_store.stored_form``).
:mod:`~stream.faust_compat.idle_take`
    the agents' batches (``take_batches``): Faust's ``take_events`` woke every ``within``
    (5 ms) while idle; these wait for a first event with no timer.
:mod:`~stream.faust_compat.internals`
    the two private attributes the worker reads or sets without patching (the current
    event of a table write, the consumer's read offset).

Each module has its test in ``tests/unit/stream/test_faust_compat*.py``, including a check
that the internal it relies on still looks as expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.faust_compat.versions import KNOWN_VERSIONS, UnknownFaustVersion, check_versions

if TYPE_CHECKING:
    from stream.faust_compat.recovery_ends import EndOffsets

__all__ = ["KNOWN_VERSIONS", "UnknownFaustVersion", "check_versions", "install"]


def install(*, fetch_max_wait_ms: int | None = None, max_pending_records: int | None = None,
            changelog_ends: EndOffsets | None = None, unsafe: bool = False) -> None:
    """Check the library versions, then apply every patch (idempotent; call before the
    app runs).

    Parameters
    ----------
    fetch_max_wait_ms
        The consumer's fetch wait (``Settings.consumer_fetch_max_wait_ms``); ``None``
        keeps Faust's.
    max_pending_records
        Changelog records that may wait to be produced before Faust stops delivering
        messages (``None`` keeps Faust's 100).
    changelog_ends
        Reads changelog end offsets for table recovery (the worker's:
        :func:`~stream.faust_compat.recovery_ends.fetch_end_offsets`); ``None`` keeps
        Faust's ListOffsets.
    unsafe
        ``Settings.faust_compat_unsafe``: start on unknown versions (with a warning).

    Raises
    ------
    UnknownFaustVersion
        When faust-streaming, mode-streaming or aiokafka is not a known version and
        ``unsafe`` is off; nothing is patched then.
    """
    check_versions(unsafe=unsafe)
    # Imported only now: on an unknown release the patched names may not even exist,
    # and the version error above is the one the operator should see.
    from stream.faust_compat import (
        commit_safety,
        fetch_wait,
        producer_ebb,
        recovery_ends,
        send_errors,
        stop_in_outage,
    )

    commit_safety.install()
    stop_in_outage.install()
    send_errors.install()
    if fetch_max_wait_ms is not None:
        fetch_wait.set_fetch_max_wait(fetch_max_wait_ms)
    if max_pending_records is not None:
        producer_ebb.set_max_pending(max_pending_records)
    recovery_ends.set_end_offsets(changelog_ends)
