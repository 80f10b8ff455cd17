"""How many table-changelog records may wait to be produced before Faust stops
delivering messages to the agents.

Faust's conductor waits, before handing each message to a stream, until its producer
buffer holds at most ``ProducerBuffer.max_messages`` (100) records, flushing one send per
event-loop turn. The worker writes one changelog record per entity a batch changed, so a
batch of a few hundred entities left a few hundred records: the next messages then came
one per flush, the batch that followed held 1-4 messages, and a backlog drained at about
a thousand events per second whatever the worker's speed (issue 14: every gap between
batches was the 50 ms ``within`` wait, with 1-3 messages in it). The records of a batch
are sent in the background either way; the bound only has to keep memory finite, so the
worker raises it to what a few of its steps can leave (:func:`set_max_pending`).
"""

from __future__ import annotations

from faust.transport.producer import ProducerBuffer


def set_max_pending(records: int) -> None:
    """Let up to ``records`` changelog records wait before delivery pauses (idempotent)."""
    ProducerBuffer.max_messages = max(int(records), 100)
