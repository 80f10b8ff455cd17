"""Topic specs, drift and the broker kind, without a broker (the admin client is a stub)."""

from __future__ import annotations

from typing import Any

from core.broker import APACHE_KAFKA, TANSU, BrokerInfo, kind_from_api_keys
from core.settings import Settings
from core.topics import TopicSpec, _drift, changelog_configs, changelog_topic, topic_specs


def test_the_broker_kind_comes_from_its_api_keys() -> None:
    kafka_keys = {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 23, 32}
    assert kind_from_api_keys(kafka_keys) == APACHE_KAFKA
    assert kind_from_api_keys(kafka_keys - {23}) == TANSU  # Tansu 0.6 lacks key 23
    info = BrokerInfo(TANSU, None, 1)
    assert info.is_tansu and info.to_dict() == {"kind": "tansu", "version": None, "brokers": 1}


def test_topics_keep_the_log_by_default() -> None:
    specs = {s.name: s for s in topic_specs(Settings(app_id="shop"))}
    assert specs["events"].configs == {"cleanup.policy": "delete", "retention.ms": "-1",
                                       "min.insync.replicas": "1"}
    assert specs["catalog"].configs["cleanup.policy"] == "compact"
    assert specs["catalog"].configs["retention.ms"] == "-1"
    assert specs["events-dlq"].partitions == 1
    assert specs["forgotten"].configs == {"cleanup.policy": "compact", "retention.ms": "-1",
                                          "min.insync.replicas": "1"}
    assert changelog_topic(Settings(app_id="shop")) == "shop-user_history-changelog"
    changelog = specs["shop-user_history-changelog"]  # created up front, like events
    assert changelog.partitions == specs["events"].partitions
    assert changelog.configs["cleanup.policy"] == "compact"


def test_topic_settings_reach_every_topic() -> None:
    s = Settings(topic_events_retention_ms=86_400_000, topic_replication_factor=3,
                 topic_min_insync_replicas=2, topic_partitions=8)
    for spec in topic_specs(s):
        assert spec.replication == 3 and spec.configs["min.insync.replicas"] == "2"
        if spec.name not in ("catalog", "forgotten", changelog_topic(s)):  # compacted
            assert spec.configs["retention.ms"] == "86400000"
    assert changelog_configs(s) == {"min.insync.replicas": "2"}


class _Admin:
    """What kafka-python's describe_configs / describe_topics answer, for one topic."""

    def __init__(self, configs: dict[str, str], partitions: int, replicas: int) -> None:
        self.configs = configs
        self.shape = [{"replica_nodes": list(range(replicas))} for _ in range(partitions)]

    def describe_configs(self, resources: list[Any], config_filter: str) -> dict[str, Any]:
        return {"topic": {r.name: {k: {"value": v} for k, v in self.configs.items()}
                          for r in resources}}

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "partitions": self.shape} for n in names]


def test_drift_names_each_difference() -> None:
    spec = TopicSpec("events", 4, 1, {"retention.ms": "-1", "cleanup.policy": "delete"})
    same = _Admin({"retention.ms": "-1", "cleanup.policy": "delete"}, 4, 1)
    assert _drift(same, [spec]) == {"events": []}
    default = _Admin({"retention.ms": "604800000", "cleanup.policy": "delete"}, 2, 1)
    assert _drift(default, [spec]) == {"events": [
        "partitions is 2, wanted 4", "retention.ms is 604800000, wanted -1"]}


def test_the_fetch_wait_follows_the_broker(monkeypatch: Any) -> None:
    """Tansu holds a fetch for the whole wait (it bounds a lone event's delay), Apache
    Kafka answers on arrival (a long wait only saves empty fetches); a set value wins."""
    import core.broker as broker

    settings = Settings()
    monkeypatch.setattr("core.net.bootstrap_reachable", lambda bootstrap: True)
    for answer, wait in ((True, broker.TANSU_FETCH_WAIT_MS), (False, broker.KAFKA_FETCH_WAIT_MS)):
        monkeypatch.setattr(broker, "is_tansu", lambda s, answer=answer: answer)
        assert broker.fetch_wait_ms(settings) == wait
    assert broker.fetch_wait_ms(Settings(consumer_fetch_max_wait_ms=70)) == 70

    def down(s: Settings) -> bool:
        raise ConnectionError("no broker yet")

    monkeypatch.setattr(broker, "is_tansu", down)
    assert broker.fetch_wait_ms(settings) == broker.TANSU_FETCH_WAIT_MS
    monkeypatch.undo()  # nothing listens: no client is built, no retries are waited for
    assert broker.fetch_wait_ms(Settings(kafka_bootstrap="127.0.0.1:1")) == 20


def test_a_child_sees_an_unset_setting_unset(monkeypatch: Any) -> None:
    """An optional setting left unset reaches a child process unset (not as "None")."""
    from core.settings import env_for_child

    monkeypatch.setenv("STREAMREC_CONSUMER_FETCH_MAX_WAIT_MS", "70")
    env = env_for_child(Settings(consumer_fetch_max_wait_ms=None))
    assert "STREAMREC_CONSUMER_FETCH_MAX_WAIT_MS" not in env
    assert env_for_child(Settings())["STREAMREC_CONSUMER_FETCH_MAX_WAIT_MS"] == "70"
