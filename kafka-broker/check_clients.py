"""Check that the pinned Python Kafka clients work against an Apache Kafka version.

Kafka 4 dropped old protocol versions (KIP-896), so which broker works with aiokafka,
Faust and kafka-python is measured here, not assumed. Each check prints PASS or FAIL with
the error; the process exits non-zero when any failed.

    python kafka-broker/check_clients.py HOST:PORT             # against a running broker
    python kafka-broker/check_clients.py --versions 4.1.2 4.4.0 # resolve, start, check, stop each

The results and the version chosen from them are in kafka-broker/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

N = 30
TS0 = 1_700_000_000_000  # record timestamps TS0, TS0+1000, ... for offsets_for_times
CONFIGS = {"retention.ms": "-1", "cleanup.policy": "compact", "min.insync.replicas": "1"}


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's effective configuration, as kafka-python's admin describes it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                     config_filter="all")
        (entries,) = (by_name[topic] for by_name in res.values())
        return {key: data["value"] if isinstance(data, dict) else data
                for key, data in entries.items()}
    finally:
        admin.close()


def create_topic(bootstrap: str, topic: str, configs: dict[str, str] | None = None) -> None:
    """Create a 4-partition topic with kafka-python's admin."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 4, 1, topic_configs=configs or {})])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, keys: list[str], *, ts0: int | None = None) -> None:
    """Send one record per key (acks=all) with kafka-python, timestamps TS0 + i s if set."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, key in enumerate(keys):
        stamp = None if ts0 is None else ts0 + i * 1000
        producer.send(topic, key=key.encode(), value=b"v%d" % i, partition=0 if ts0 else None,
                      timestamp_ms=stamp)
    producer.flush()
    producer.close()


def check_admin(bootstrap: str, topic: str) -> str:
    """kafka-python admin: a topic with source-of-truth configs, read back."""
    create_topic(bootstrap, topic, CONFIGS)
    got = topic_configs(bootstrap, topic)
    assert all(got[k] == v for k, v in CONFIGS.items()), got
    return "create_topics with configs, describe_configs"


def check_kp_group(bootstrap: str, topic: str) -> str:
    """kafka-python producer and group consumer; the committed offsets, as status reads them."""
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, [f"k{i}" for i in range(N)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < N and time.monotonic() < deadline:
        seen += sum(len(v) for v in consumer.poll(500).values())
    consumer.commit()
    consumer.close()
    assert seen == N, seen
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    committed = admin.list_group_offsets({group: None})[group]
    admin.close()
    assert sum(o.offset for o in committed.values()) == N, committed
    return "produce acks=all, group poll + commit, list_group_offsets"


def check_offsets(bootstrap: str, topic: str) -> str:
    """ListOffsets by timestamp, latest and earliest (replay --from-time, lag)."""
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, [f"k{i}" for i in range(10)], ts0=TS0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tp = TopicPartition(topic, 0)
    found = consumer.offsets_for_times({tp: TS0 + 4500})[tp]
    end = consumer.end_offsets([tp])[tp]
    begin = consumer.beginning_offsets([tp])[tp]
    consumer.close()
    assert found is not None and found.offset == 5, found
    assert (begin, end) == (0, 10), (begin, end)
    return "offsets_for_times, end_offsets, beginning_offsets"


async def _aiokafka(bootstrap: str, topic: str) -> str:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATP

    create_topic(bootstrap, topic)
    for opts in ({"acks": "all"}, {"enable_idempotence": True}):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **opts)
        await producer.start()
        try:
            for i in range(N // 2):
                await producer.send_and_wait(topic, key=b"k%d" % i, value=b"v")
        finally:
            await producer.stop()
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < N and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(v) for v in batch.values())
        await consumer.commit()
        tps = [ATP(topic, p) for p in range(4)]
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) for tp in tps]
        await consumer.offsets_for_times({tp: TS0 for tp in tps})
    finally:
        await consumer.stop()
    assert seen == N and sum(ends.values()) == N and sum(c or 0 for c in committed) == N
    return "producer acks=all and idempotent, group getmany + commit, end_offsets"


def check_aiokafka(bootstrap: str, topic: str) -> str:
    """aiokafka producers (acks=all, idempotent) and a consumer group, as the API and worker."""
    return asyncio.run(_aiokafka(bootstrap, topic))


async def _aiokafka_txn(bootstrap: str, topic: str) -> str:
    from aiokafka import AIOKafkaProducer

    create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                transactional_id=f"t-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, key=b"k", value=b"v")
    finally:
        await producer.stop()
    return "transactional producer (not used by streamrec)"


def check_aiokafka_txn(bootstrap: str, topic: str) -> str:
    """aiokafka transactions (Faust's exactly-once mode; not used by streamrec)."""
    return asyncio.run(_aiokafka_txn(bootstrap, topic))


def faust_worker(bootstrap: str, app_id: str, topic: str, status: str, patched: str) -> None:
    """Run a Faust app counting records per key in a changelog table (a subprocess).

    ``patched == "1"`` installs streamrec's Faust fixes (stream/faust_compat/commit_safety.py)
    first, as the streamrec worker does.
    """
    import faust

    if patched == "1":
        from stream.faust_compat import commit_safety

        commit_safety.install()

    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://",
                    topic_partitions=4, producer_acks=-1, table_standby_replicas=0,
                    web_enabled=False, broker_commit_interval=0.5,
                    consumer_auto_offset_reset="earliest",
                    datadir=str(Path(status).parent / f"{app_id}-data"))
    source = app.topic(topic, key_type=str, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    counts = app.Table("counts", default=int, partitions=4)

    seen: list[int] = []

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            counts[event.key] += 1
            seen.append(event.message.offset)

    @app.timer(0.3)
    async def report() -> None:
        tmp = f"{status}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"counts": dict(counts.items()), "offsets": seen}, fh)
        os.replace(tmp, status)

    level = os.environ.get("CHECK_FAUST_LOGLEVEL", "WARNING")
    faust.Worker(app, loglevel=level).execute_from_commandline()


def _faust_round(bootstrap: str, app_id: str, topic: str, want: dict[str, int],
                 workdir: Path, patched: bool) -> None:
    status = workdir / "status.json"
    status.unlink(missing_ok=True)
    log = open(workdir / f"faust-{sum(want.values())}.log", "ab")  # noqa: SIM115
    cmd = [sys.executable, __file__, "--faust-worker", bootstrap, app_id, topic, str(status),
           str(int(patched))]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        got: dict[str, int] = {}
        offsets: list[int] = []
        deadline = time.monotonic() + 90
        stable_since = None
        while time.monotonic() < deadline and proc.poll() is None:
            if status.exists():
                report = json.loads(status.read_text())
                got, offsets = report["counts"], report["offsets"]
            if got == want:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 3:
                    break
            else:
                stable_since = None
            time.sleep(0.2)
        assert got == want, (f"table {got} != {want} after reading offsets {offsets} "
                             f"(exit {proc.poll()}); see {log.name}")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def check_faust(bootstrap: str, topic: str, patched: bool = False) -> str:
    """A Faust table survives a worker restart: recovered from its compacted changelog,
    and the source resumes at the committed offsets (no record lost or counted twice)."""
    create_topic(bootstrap, topic)
    app_id = f"check-{uuid.uuid4().hex[:6]}"
    keys = [f"k{i % 3}" for i in range(N)]
    workdir = Path(tempfile.mkdtemp(prefix="faust-check-"))
    produce(bootstrap, topic, keys)
    _faust_round(bootstrap, app_id, topic, {k: keys.count(k) for k in set(keys)}, workdir,
                 patched)
    changelog = topic_configs(bootstrap, f"{app_id}-counts-changelog")
    assert changelog["cleanup.policy"] == "compact", changelog["cleanup.policy"]
    more = [f"k{i % 3}" for i in range(6)]
    produce(bootstrap, topic, more)
    _faust_round(bootstrap, app_id, topic, {k: (keys + more).count(k) for k in set(keys)},
                 workdir, patched)
    return "agent + table, changelog compacted, restart recovers the table and offsets"


CHECKS: dict[str, Callable[[str, str], str]] = {
    "kafka-python admin": check_admin,
    "kafka-python group": check_kp_group,
    "kafka-python offsets": check_offsets,
    "aiokafka": check_aiokafka,
    "aiokafka transactions": check_aiokafka_txn,
    "faust (stock)": check_faust,
    "faust + streamrec's fixes": lambda bootstrap, topic: check_faust(bootstrap, topic, True),
}


def run_checks(bootstrap: str) -> dict[str, str]:
    """Run every check against ``bootstrap``; name -> 'PASS: what' or 'FAIL: error'."""
    results = {}
    for name, check in CHECKS.items():
        topic = f"{name.split()[0]}-{uuid.uuid4().hex[:6]}"
        try:
            results[name] = "PASS: " + check(bootstrap, topic)
        except Exception as exc:  # noqa: BLE001 - a failed check is a result
            last = traceback.format_exception_only(exc)[-1].strip()
            results[name] = f"FAIL: {last[:300]}"
        print(f"  {name}: {results[name]}", flush=True)
    return results


def check_versions(versions: list[str]) -> int:
    """Resolve, start, check and stop each Kafka version in turn."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from streamrec import kafka_broker as kb

    failed = 0
    for version in versions:
        jars = Path(tempfile.gettempdir()) / "streamrec-kafka-jars" / version
        if kb.jars_version(jars) != version:
            subprocess.run(["mvn", "-q", "-B", "-f", str(kb.POM),
                            "dependency:copy-dependencies", f"-Dkafka.version={version}",
                            f"-DoutputDirectory={jars}"], check=True)
        state = Path(tempfile.mkdtemp(prefix=f"kafka-{version}-"))
        started = time.monotonic()
        broker = kb.start_kafka(state, jars_dir=jars)
        print(f"Kafka {broker.version}: ready in {time.monotonic() - started:.1f} s", flush=True)
        try:
            failed += sum(r.startswith("FAIL") for r in run_checks(broker.address).values())
        finally:
            broker.stop(timeout=30)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", nargs="?")
    parser.add_argument("--versions", nargs="+", default=[])
    parser.add_argument("--faust-worker", nargs=5,
                        metavar=("BOOTSTRAP", "APP", "TOPIC", "OUT", "PATCHED"))
    args = parser.parse_args()
    if args.faust_worker:
        faust_worker(*args.faust_worker)
        return 0
    if args.versions:
        return check_versions(args.versions)
    if not args.bootstrap:
        parser.error("give HOST:PORT or --versions")
    results = run_checks(args.bootstrap)
    return 1 if any(r.startswith("FAIL") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
