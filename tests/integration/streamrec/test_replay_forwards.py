"""``streamrec replay --rebuild`` reads the log; it does not write to it.

When an anonymous id is identified, the worker forwards the id's history to the user's
partition (copies marked ``forwarded``). Those copies are in the log from then on, so
a replay finds them there. A replay that forwarded them again added a new set of copies
to ``events`` on every run: the topic's end offsets grew with each replay
(531 → 594 messages after two replays of 454 on Apache Kafka), so the log
stopped being the record of what clients sent.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.integration.streamrec.conftest import Cli
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()
T0 = 1_700_000_000.0


def send(settings: Settings, events: list[dict[str, object]]) -> None:
    """Each event as its own envelope, keyed as the API keys it (identify: the
    anonymous id), in order."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    try:
        for ev in events:
            key = str(ev["anonymous_id"] if ev["type"] == "identify"
                      else ev.get("user_id") or ev["anonymous_id"])
            producer.send(settings.topic_events, key=key.encode(),
                          value=orjson.dumps({"v": 1, "events": [ev]}),
                          timestamp_ms=int(float(str(ev["ts"])) * 1000))
        producer.flush()
    finally:
        producer.close()


def test_replay_rebuild_sends_no_forwards_again(replay_stack: tuple[Settings, Cli],
                                                tmp_path: Path) -> None:
    """Anonymous ids carting items and then identified: the worker forwards their
    histories once. Two ``replay --rebuild`` later the events topic holds exactly the
    same messages, and the users still have the carts the copies in the log give them."""
    s, cli = replay_stack

    shoppers = [(f"anon-{n}", f"user-{n}") for n in range(8)]
    events: list[dict[str, object]] = []
    for n, (anon, _) in enumerate(shoppers):
        events += [{"event_id": f"{anon}-v", "type": "view", "anonymous_id": anon,
                    "item_id": f"item-{n}", "ts": T0 + n},
                   {"event_id": f"{anon}-c", "type": "add_to_cart", "anonymous_id": anon,
                    "item_id": f"item-{n}", "ts": T0 + n + 0.5}]
    identify = [{"event_id": f"{anon}-id", "type": "identify", "anonymous_id": anon,
                 "user_id": user, "ts": T0 + 100 + n}
                for n, (anon, user) in enumerate(shoppers)]
    client = redis.Redis.from_url(s.redis_url)
    cli("up", "--timeout", "90")
    try:
        send(s, events)
        send(s, identify)

        def carts() -> dict[str, list[bytes]]:
            return {user: client.zrange(K.user_cart(user), 0, -1) for _, user in shoppers}

        want = {user: [f"item-{n}".encode()] for n, (_, user) in enumerate(shoppers)}
        wait_for(lambda: carts() == want, 60, "the forwarded carts")
        wait_for(lambda: client.exists(K.sentinel), 60, "the first rebuild's sentinel")
        ends = kafka_tools.high_watermarks(s, s.topic_events)
        assert sum(ends.values()) > len(events) + len(identify)  # the forwards are there

        for _ in range(2):
            assert "reprocessed" in cli("replay", "--rebuild")
            assert carts() == want
            assert kafka_tools.high_watermarks(s, s.topic_events) == ends
    finally:
        client.close()
        cli("down")


def test_second_replay_keeps_the_first_replays_marks(settings: Settings) -> None:
    """Two ``replay --rebuild`` in a row, the second before the worker the first restarted
    got through the log: that worker's applied offsets start again near 0, and a mark
    taken from them alone let it forward the identified histories above them once more
    (12,800 messages grew to 13,450 on the embedded stack). The first mark is kept."""
    from streamrec.ops.replay import mark_forwarded

    kafka_tools.create_topics(settings)
    send(settings, [{"event_id": f"e{n}", "type": "view", "anonymous_id": f"a{n}",
                     "item_id": "i1", "ts": T0 + n} for n in range(40)])
    ends = kafka_tools.high_watermarks(settings, settings.topic_events)
    assert all(end > 1 for end in ends.values())
    client = redis.Redis.from_url(settings.redis_url)
    try:
        applied = K.applied(settings.topic_events)
        client.hset(applied, mapping=ends)  # the stopped worker had applied everything
        assert mark_forwarded(settings) == ends
        # The restarted worker applied a first batch from offset 0, then was stopped again.
        client.hset(applied, mapping=dict.fromkeys(ends, 1))
        assert mark_forwarded(settings) == ends
        assert {int(p): int(o) for p, o in client.hgetall(K.forwarded).items()} == ends
        # A mark beyond the partition's end is of a log that was lost: dropped.
        client.hset(K.forwarded, mapping={p: end + 1000 for p, end in ends.items()})
        assert mark_forwarded(settings) == dict.fromkeys(ends, 1)
    finally:
        client.close()


def test_rebuild_interrupted_after_the_wipe_leaves_the_group_reset(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while ``replay --rebuild`` wipes Redis: the group has been reset already
    (and the forwards marked), so the worker ``streamrec up`` restarts refills what was
    wiped. Before, the group stayed at the log's end over an empty Redis: lists stayed
    empty while ``status`` said ok with lag 0."""
    from streamrec.ops import replay
    from streamrec.ops.group_offsets import commit_group_offsets

    kafka_tools.create_topics(settings)
    send(settings, [{"event_id": f"e{n}", "type": "view", "anonymous_id": f"a{n}",
                     "item_id": "i1", "ts": T0 + n} for n in range(20)])
    ends = kafka_tools.high_watermarks(settings, settings.topic_events)
    commit_group_offsets(settings, settings.topic_events, ends)  # a worker had read all
    client = redis.Redis.from_url(settings.redis_url)
    client.hset(K.applied(settings.topic_events), mapping=ends)

    def interrupted(*_args: object, **_kw: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(replay, "wipe_derived", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            replay.rebuild(settings, from_ts=None, keep_state=False, echo=lambda _m: None)
        committed = kafka_tools.committed_offsets(settings, settings.app_id)
        assert {tp.partition: off for tp, off in committed.items()
                if tp.topic == settings.topic_events} == dict.fromkeys(ends, 0)
        assert {int(p): int(o) for p, o in client.hgetall(K.forwarded).items()} == ends
    finally:
        client.close()
