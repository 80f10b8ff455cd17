"""KRaft cluster ids that ``kafka-storage format`` accepts, and why a node failed to start."""

from __future__ import annotations

import base64
from pathlib import Path

from streamrec.stack import kafka_broker, servers


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


def test_a_failed_node_reports_its_error_lines_not_its_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("\n".join([
        "[t] INFO starting (kafka.server.KafkaRaftServer)",
        "[t] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:1",
        *(f"[t] INFO shutdown step {i} (kafka.server.SharedServer)" for i in range(40)),
    ]))
    lines = servers.failure_lines(log).splitlines()
    assert lines[0].endswith("(kafka.Kafka$)")
    assert "failed to bind" in lines[1]
    assert len(lines) == 2
