"""An identify's hand-over as topic events: what the batch loop sends to the user's
partition (:func:`stream.agents.forward_messages` packs them into messages)."""

from __future__ import annotations

from collections.abc import Sequence

from recommender.batch_step import EntityStep
from schemas import TopicEvent


def collect_forwards(step: EntityStep, events: Sequence[TopicEvent], entity: str,
                     forwards: dict[str, list[TopicEvent]]) -> None:
    """Add ``step``'s forwards to ``forwards`` (user → events) as topic events for the
    identified user's partition: the anonymous history's entries at the ``identify``
    (with their receive times, which the abuse rules read), later events re-addressed."""
    for fw in step.forwards:
        out = forwards.setdefault(fw.target, [])
        if fw.entries is not None:
            out.extend(TopicEvent(event_id=event_id, type=etype, item_id=item_id or None,
                                  anonymous_id=entity, user_id=fw.target, ts=ts,
                                  received_at=received, forwarded=True)
                       for event_id, item_id, etype, ts, received in fw.entries)
        elif fw.event is not None:
            out.append(events[fw.event].model_copy(
                update={"user_id": fw.target, "forwarded": True}))
