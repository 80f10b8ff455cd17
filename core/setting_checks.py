"""Types of the settings whose Python type alone does not say what is allowed.

:class:`core.settings.Settings` annotates its fields with them, so a bad value fails where
every process reads its settings (``streamrec up/worker/api/status/config``): one line
naming the ``STREAMREC_*`` variable and what it accepts, instead of a client library's
traceback once the process connects (an unknown log level, a Redis URL without a scheme,
a bootstrap address with a port that is no number, a state directory that is a file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from core.net import MAX_PORT


def _refuse(reason: str) -> NoReturn:
    """Raise the validation error whose message is exactly ``reason``."""
    raise PydanticCustomError("invalid_setting", "{reason}", {"reason": reason})


def _upper(value: Any) -> Any:
    """Names such as log levels and Kafka protocols, in any case, without spaces."""
    return value.strip().upper() if isinstance(value, str) else value


def _port(text: str, where: str) -> None:
    """Refuse a port that is no number in 1..:data:`core.net.MAX_PORT`."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PORT:
        _refuse(f"{where}: the port {text!r} is not a number in 1..{MAX_PORT}")


#: The port of a bootstrap address that names none (Kafka clients' default).
DEFAULT_KAFKA_PORT = 9092


def check_kafka_bootstrap(value: str) -> str:
    """Empty (the embedded stack's broker), or comma-separated ``host[:port]`` addresses
    (``[v6]:port`` for IPv6), returned as ``host:port`` without the spaces around them: a
    host alone gets :data:`DEFAULT_KAFKA_PORT`, as the Kafka clients give it, so the code
    that probes the addresses itself (``status``, TLS/SASL checks) sees the same port."""
    if not value.strip():
        return ""
    hosts = [part.strip() for part in value.split(",")]
    kept = []
    for host in hosts:
        if host.startswith("["):  # [::1]:9092
            name, sep, port = host[1:].partition("]")
            port = port.removeprefix(":") if sep else port
        else:
            name, _, port = host.partition(":")
            sep = "]" if ":" not in port else ""
        if not name or not sep or any(c in host for c in "/@ \t") or (
                port == "" and host.endswith(":")):
            _refuse(f"{host!r} is no Kafka address; give host:port[,host:port...], "
                    "e.g. kafka-1:9092")
        if port:
            _port(port, host)
        kept.append(host if port else f"{host}:{DEFAULT_KAFKA_PORT}")
    return ",".join(kept)


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(value: str) -> str:
    """Empty (the embedded stack's Redis), or a URL redis-py accepts: ``redis://`` or
    ``rediss://`` with a host and, if given, a numeric port — for a Redis Cluster, several
    comma-separated ``host:port`` nodes (``core.redis_client``); ``unix://`` with a path."""
    if not value.strip():
        return ""
    allowed = ("give redis://[user:password@]host[:port][,host:port...][/db], rediss://... "
               "or unix:///path")
    parts = urlsplit(value.strip())
    if parts.scheme not in _REDIS_SCHEMES:
        _refuse(f"{mask_url(value)!r} is no Redis URL (scheme {parts.scheme or 'missing'!r}); "
                f"{allowed}")
    if parts.scheme == "unix":
        if not parts.path:
            _refuse(f"{mask_url(value)!r} names no socket path; {allowed}")
        return value.strip()
    userinfo, at, hosts = parts.netloc.rpartition("@")
    for node in hosts.split(","):  # one node, or a Redis Cluster's seed nodes
        try:
            one = urlsplit(f"{parts.scheme}://{userinfo}{at}{node.strip()}{parts.path}")
            port = one.port
        except ValueError:
            _refuse(f"{mask_url(value)!r} is no Redis URL (its port is not a number in "
                    f"1..{MAX_PORT}); {allowed}")
        if not one.hostname or port == 0:
            _refuse(f"{mask_url(value)!r} names no host and port; {allowed}")
    return value.strip()


def mask_url(url: str) -> str:
    """A connection URL safe to print: its user and password (``user:pw@``) and a
    ``password=`` query parameter (which redis-py reads too) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    head, question, query = rest.partition("?")
    if "@" in head:
        head = "***@" + head.rsplit("@", 1)[1]
    if question:
        query = re.sub(r"(^|&)(password=)[^&#]*", r"\1\2***", query, flags=re.IGNORECASE)
    return f"{scheme}{sep}{head}{question}{query}"


def check_state_dir(value: Path) -> Path:
    """A directory, or a path one can be created at: neither it nor any parent a file."""
    for path in (value, *value.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == value else f"lies under the file {path}"
                _refuse(f"{value} {what}; give a directory (it is created if missing)")
            break
    return value


def check_insync_fits(min_insync: int, replicas: int) -> None:
    """Refuse a ``min.insync.replicas`` above the replication factor."""
    if min_insync > replicas:
        _refuse(f"STREAMREC_TOPIC_MIN_INSYNC_REPLICAS ({min_insync}) exceeds "
                f"STREAMREC_TOPIC_REPLICATION_FACTOR ({replicas}): every acks=all write "
                "would fail; give at most the replication factor")


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(_upper)]
KafkaSecurityProtocol = Annotated[Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                                  BeforeValidator(_upper)]
#: The mechanisms a username and password (all the settings give) can sign in with.
KafkaSaslMechanism = Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                               BeforeValidator(_upper)]
KafkaBootstrap = Annotated[str, AfterValidator(check_kafka_bootstrap)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
StateDir = Annotated[Path, AfterValidator(check_state_dir)]
