"""KRaft cluster ids that ``kafka-storage format`` accepts on its command line."""

from __future__ import annotations

import base64

from streamrec.stack import kafka_broker


def test_cluster_ids_never_start_with_a_dash(monkeypatch) -> None:
    """An id beginning with ``-`` would be parsed as an option: such draws are rerolled."""
    draws = iter([b"\xfb" + bytes(15), bytes(range(16))])

    class FakeUuid:
        def __init__(self, raw: bytes) -> None:
            self.bytes = raw

    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: FakeUuid(next(draws)))
    assert base64.urlsafe_b64encode(b"\xfb" + bytes(15)).decode().startswith("-")
    assert kafka_broker.new_cluster_id() == base64.urlsafe_b64encode(
        bytes(range(16))).decode().rstrip("=")


def test_cluster_ids_are_22_url_safe_characters() -> None:
    """Kafka's own format: 16 bytes in URL-safe base64 without padding."""
    for _ in range(500):
        text = kafka_broker.new_cluster_id()
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
