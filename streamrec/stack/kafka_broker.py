"""Apache Kafka (KRaft, no ZooKeeper) as a local process, from jars Maven resolves.

``kafka-broker/pom.xml`` pins the Kafka version and gathers its jars from Maven Central; this
module copies them once into a directory, writes a ``server.properties`` for a node that
is broker and controller at once, formats its storage only when it was never formatted
(so a restart on the same directory keeps the log), starts ``java -cp 'JARS/*'
kafka.Kafka`` detached with its log in a file, and waits until the node answers a
Metadata request listing itself. Which version and why, and measured start times, are in
``kafka-broker/README.md``.

    python -m streamrec.stack.kafka_broker resolve          # jars into kafka-broker/lib/<version>
    python -m streamrec.stack.kafka_broker start STATE_DIR  # a single node, prints its address
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.net import free_port
from streamrec.stack.servers import PrerequisiteMissing, ServerProcess, spawn, stop_pid

KAFKA_DIR = Path(__file__).resolve().parents[2] / "kafka-broker"
POM = KAFKA_DIR / "pom.xml"
JAR_PREFIX = "kafka_2.13-"
# Small heap and serial GC: the cheapest reliable start on 2 cores (kafka-broker/README.md).
JAVA_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
# Class-data archive of a broker's classes, made once per jar directory: starts then map
# it instead of loading the jars, about half the CPU of a start.
CLASS_ARCHIVE = "kafka-classes.jsa"
LOG4J2 = """\
status = warn
# Kafka logs its own shutdown; Log4j must not stop first.
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True)
class KafkaNodeSpec:
    """Where one KRaft node listens: clients on ``port``, the quorum on ``controller_port``."""

    node_id: int
    port: int
    controller_port: int
    host: str = "127.0.0.1"


@dataclass
class KafkaBroker(ServerProcess):
    """A running Kafka node we started: a :class:`ServerProcess` plus what Kafka it is."""

    version: str = ""
    node_id: int = 1
    controller_port: int = 0
    cluster_id: str = ""
    node_dir: Path | None = None


def pinned_version(pom: Path = POM) -> str:
    """The Kafka version ``kafka-broker/pom.xml`` pins (the one place it is written)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise ValueError(f"{pom} has no <kafka.version> property")
    return (node.text or "").strip()


def jars_version(jars_dir: Path) -> str | None:
    """The Kafka version whose broker jar is in ``jars_dir``, or None when there is none."""
    for jar in sorted(jars_dir.glob(f"{JAR_PREFIX}*.jar")):
        version = jar.name[len(JAR_PREFIX):-len(".jar")]
        if version[:1].isdigit() and "-" not in version:
            return version
    return None


def java_binary() -> str:
    """The ``java`` to run Kafka with: ``$JAVA_HOME/bin/java``, else the PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise PrerequisiteMissing("Apache Kafka needs Java 17 or newer: apt-get install "
                                  "openjdk-17-jre-headless (or use --broker tansu)")
    return found


def resolve_jars(jars_dir: Path | None = None, *, pom: Path = POM) -> Path:
    """Return a directory holding Kafka's jars and class archive, making what is missing.

    The default is ``kafka-broker/lib/<pinned version>``. A ``jars_dir`` that already
    holds some Kafka is used as it is (the started broker reports its version).
    """
    version = pinned_version(pom)
    target = jars_dir or KAFKA_DIR / "lib" / version
    if not (jars_version(target) == version or (jars_dir and jars_version(jars_dir))):
        _copy_jars(pom, version, target)
    if not any(target.glob(f"{CLASS_ARCHIVE}*")):
        build_class_archive(target)
    return target


def _copy_jars(pom: Path, version: str, target: Path) -> None:
    """Run Maven into a temporary sibling renamed into place, so an interrupted
    resolution never leaves a half-filled directory that looks complete."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise PrerequisiteMissing("resolving Apache Kafka's jars needs Maven: apt-get "
                                  "install maven (or use --broker tansu)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}"],
            capture_output=True, text=True, check=False)
        if done.returncode != 0 or jars_version(tmp) != version:
            raise RuntimeError(f"mvn could not resolve Kafka {version} from {pom}:\n"
                               f"{(done.stdout + done.stderr)[-2000:]}")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quorum_voters(nodes: Sequence[KafkaNodeSpec]) -> str:
    """``controller.quorum.voters`` for these nodes (a static quorum: every node votes)."""
    return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)


def server_properties(spec: KafkaNodeSpec, *, data_dir: Path, voters: str,
                      partitions: int = 4, replication: int = 1,
                      extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The configuration of one combined broker+controller node.

    ``replication`` is the cluster size for internal topics (1 for one node, 3 for three).
    Topics are never created by a stray producer or consumer: their retention and
    compaction must come from ``streamrec topics create``, not from broker defaults.
    """
    plain = f"PLAINTEXT://{spec.host}:{spec.port}"
    internal_isr = str(min(replication, 2))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(spec.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"{plain},CONTROLLER://{spec.host}:{spec.controller_port}",
        "advertised.listeners": plain,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(partitions),
        "default.replication.factor": str(replication),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(replication),
        # 50 partitions by default: each is created, loaded and indexed on first use.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": internal_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": internal_isr,
        # Groups form at once, and tests may use session timeouts below the 6 s default.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # The cleaner's default 128 MiB dedupe buffer would be a quarter of a small heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
    }
    props.update(extra or {})
    return props


def write_properties(path: Path, props: Mapping[str, str]) -> Path:
    """Write a Java ``.properties`` file (``\\`` is its only escape our values can hold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in props.items()))
    return path


def new_cluster_id() -> str:
    """A fresh KRaft cluster id (16 random bytes, URL-safe base64 unpadded), never one
    starting with ``-``, which a command line reads as an option (Kafka's ``Uuid`` too)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def java_command(jars_dir: Path, main: str, args: Sequence[str], *, log4j: Path,
                 java_opts: Sequence[str] = JAVA_OPTS) -> list[str]:
    """The ``java`` command line that runs ``main`` from Kafka's jars (and their archive)."""
    archive = jars_dir / CLASS_ARCHIVE
    share = [f"-XX:SharedArchiveFile={archive}"] if archive.exists() and not any(
        "ArchiveClasses" in opt for opt in java_opts) else []
    return [java_binary(), *java_opts, *share, f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{jars_dir}/*", main, *args]


def format_storage(jars_dir: Path, config: Path, data_dir: Path, *, cluster_id: str,
                   log4j: Path, java_opts: Sequence[str] = JAVA_OPTS) -> bool:
    """Format ``data_dir`` for KRaft unless it already is; True when it formatted.

    Never reformats: ``meta.properties`` marks a directory that holds a log to keep.
    """
    if (data_dir / "meta.properties").exists():
        return False
    cmd = java_command(jars_dir, "kafka.tools.StorageTool",
                       ["format", f"--cluster-id={cluster_id}", "-c", str(config)],
                       log4j=log4j, java_opts=java_opts)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kafka-storage format failed:\n{done.stdout}{done.stderr}")
    return True


def stored_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a formatted ``data_dir`` belongs to (from ``meta.properties``)."""
    meta = data_dir / "meta.properties"
    if not meta.exists():
        return None
    lines = meta.read_text().splitlines()
    return next((ln.split("=", 1)[1] for ln in lines if ln.startswith("cluster.id=")), None)


def metadata(host: str, port: int, timeout: float = 1.0) -> tuple[str | None, list[int]] | None:
    """The cluster id and live broker ids a Kafka at host:port reports, or None if none
    answers. Sends Metadata v4 (Kafka 4 keeps v4+, KIP-896) for no topics."""
    client = b"streamrec-probe"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            reader = sock.makefile("rb")
            data = reader.read(struct.unpack(">i", reader.read(4))[0])
        # correlation id, throttle ms, brokers [id, host, port, rack], cluster id, ...
        pos, ids = 12, []
        for _ in range(struct.unpack_from(">i", data, 8)[0]):
            broker_id, host_len = struct.unpack_from(">ih", data, pos)
            pos += 6 + host_len + 4
            pos += 2 + max(struct.unpack_from(">h", data, pos)[0], 0)
            ids.append(broker_id)
        (id_len,) = struct.unpack_from(">h", data, pos)
    except (OSError, struct.error):
        return None
    cluster = data[pos + 2:pos + 2 + id_len].decode() if id_len >= 0 else None
    return cluster, ids


def wait_ready(broker: KafkaBroker, *, timeout: float = 60.0) -> None:
    """Block until ``broker`` lists itself in Metadata, i.e. registered with the quorum
    and unfenced (its port opens seconds earlier); fail fast if its process exits or
    another cluster answers on its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.proc is not None and broker.proc.poll() is not None:
            tail = broker.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka node {broker.node_id} exited with code "
                               f"{broker.proc.returncode} before it was ready:\n{tail}")
        answer = metadata(broker.host, broker.port)
        if answer is not None and answer[0] != broker.cluster_id:
            raise RuntimeError(f"another Kafka (cluster {answer[0]}) answers on "
                               f"{broker.address}; ours is {broker.cluster_id}")
        if answer is not None and broker.node_id in answer[1]:
            return
        time.sleep(0.1)
    raise TimeoutError(f"Kafka node {broker.node_id} at {broker.address} not ready after "
                       f"{timeout:.0f}s; see {broker.log_path}")


def start_node(node_dir: Path, spec: KafkaNodeSpec, *, voters: str, cluster_id: str,
               jars_dir: Path, replication: int = 1, partitions: int = 4,
               extra: Mapping[str, str] | None = None,
               java_opts: Sequence[str] = JAVA_OPTS, wait: bool = True,
               timeout: float = 60.0) -> KafkaBroker:
    """Start one KRaft node whose config, log and data live in ``node_dir``.

    Every node of a cluster gets the same ``voters`` and ``cluster_id`` (``cluster_id`` is
    used only when ``node_dir`` was never formatted). With ``wait=False`` the caller starts
    all nodes of a quorum first and then calls :func:`wait_ready` on each.
    """
    data_dir = node_dir / "data"
    log4j = node_dir / "log4j2.properties"
    log4j.parent.mkdir(parents=True, exist_ok=True)
    log4j.write_text(LOG4J2)
    config = write_properties(node_dir / "server.properties", server_properties(
        spec, data_dir=data_dir, voters=voters, partitions=partitions,
        replication=replication, extra=extra))
    format_storage(jars_dir, config, data_dir, cluster_id=cluster_id, log4j=log4j,
                   java_opts=java_opts)
    log_path = node_dir / "kafka.log"
    cmd = java_command(jars_dir, "kafka.Kafka", [str(config)], log4j=log4j,
                       java_opts=java_opts)
    proc = spawn(cmd, log_path=log_path)
    broker = KafkaBroker(
        name="kafka", host=spec.host, port=spec.port, pid=proc.pid, log_path=log_path,
        proc=proc, version=jars_version(jars_dir) or "unknown", node_id=spec.node_id,
        controller_port=spec.controller_port, cluster_id=stored_cluster_id(data_dir) or "",
        node_dir=node_dir)
    if wait:
        try:
            wait_ready(broker, timeout=timeout)
        except BaseException:
            stop_pid(proc.pid, timeout=5)
            raise
    return broker


def build_class_archive(jars_dir: Path) -> bool:
    """Start and stop a throwaway node to record its classes in ``jars_dir``'s archive.

    The JVM writes the archive as it exits. On failure a ``.failed`` marker stops later
    starts from trying again (they run without the archive, only slower).
    """
    target = jars_dir / CLASS_ARCHIVE
    with tempfile.TemporaryDirectory(prefix=".cds-", dir=jars_dir.parent) as tmp:
        out = Path(tmp) / CLASS_ARCHIVE
        spec = KafkaNodeSpec(1, free_port(), free_port())
        broker = start_node(Path(tmp), spec, voters=quorum_voters([spec]),
                            cluster_id=new_cluster_id(), jars_dir=jars_dir,
                            java_opts=(*JAVA_OPTS, f"-XX:ArchiveClassesAtExit={out}"))
        broker.stop(timeout=120)
        if out.exists() and out.stat().st_size > 0:
            os.replace(out, target)
            return True
    target.with_name(f"{CLASS_ARCHIVE}.failed").touch()
    return False


def start_kafka(state_dir: Path, *, port: int | None = None,
                controller_port: int | None = None, host: str = "127.0.0.1",
                jars_dir: Path | None = None, partitions: int = 4,
                extra: Mapping[str, str] | None = None,
                java_opts: Sequence[str] = JAVA_OPTS, timeout: float = 60.0) -> KafkaBroker:
    """Start a single-node Kafka (node 1) under ``state_dir/kafka`` and wait until ready.

    Ports default to free ones. Data survives in ``state_dir/kafka/data``: calling this
    again on the same ``state_dir`` (after :meth:`KafkaBroker.stop`) serves the same log.
    """
    jars = resolve_jars(jars_dir)
    spec = KafkaNodeSpec(1, port or free_port(host), controller_port or free_port(host), host)
    return start_node(state_dir / "kafka", spec, voters=quorum_voters([spec]),
                      cluster_id=new_cluster_id(), jars_dir=jars, partitions=partitions,
                      extra=extra, java_opts=java_opts, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """``resolve``: fetch the jars; ``start STATE_DIR``: run one node until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m streamrec.stack.kafka_broker",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    res = sub.add_parser("resolve", help="copy the pinned Kafka's jars (runs mvn if needed)")
    res.add_argument("--jars-dir", type=Path, help="default: kafka-broker/lib/<version>")
    run = sub.add_parser("start", help="run a single-node Kafka in the foreground")
    run.add_argument("state_dir", type=Path)
    run.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "resolve":
        started = time.monotonic()
        jars = resolve_jars(args.jars_dir)
        print(f"Apache Kafka {jars_version(jars)} jars in {jars} "
              f"({time.monotonic() - started:.1f} s)")
        return 0
    broker = start_kafka(args.state_dir, port=args.port)
    print(f"Apache Kafka {broker.version} ready at {broker.address} (pid {broker.pid}); "
          f"log {broker.log_path}", flush=True)
    try:
        assert broker.proc is not None
        broker.proc.wait()
    except KeyboardInterrupt:
        broker.stop(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
