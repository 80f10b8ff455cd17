"""Connection security from settings, in one place: Redis TLS and Kafka SSL/SASL.

Every client that connects (API producer, worker, CLI tools) takes its options from here,
so a deployment configures credentials and certificates once, through ``STREAMREC_*``.
Secrets (passwords, API keys) only ever travel to the client libraries; nothing here
logs them, and ``Settings.public_dict`` masks them for display.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from core.settings import Settings


def redis_options(settings: Settings) -> dict[str, Any]:
    """Extra ``Redis.from_url`` options: the CA (and client cert) for ``rediss://`` URLs.

    Password and ACL user travel in the URL (``rediss://user:password@host:6380/0``).
    """
    if not settings.redis_url.startswith("rediss://"):
        return {}
    opts: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if settings.redis_tls_ca_file:
        opts["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file:
        opts["ssl_certfile"] = settings.redis_tls_cert_file
        opts["ssl_keyfile"] = settings.redis_tls_key_file or None
    return opts


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS context for Kafka when the protocol is SSL or SASL_SSL (else None)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile,
                                settings.kafka_ssl_keyfile or None)
    return context


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the Faust worker (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust

    context = kafka_ssl_context(settings)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context)


def kafka_handshake_problem(settings: Settings, *, timeout_s: float = 5.0) -> str | None:
    """One line naming why Kafka refuses this process's TLS or SASL handshake (an
    untrusted certificate, rejected credentials), or None when a bootstrap server accepts
    it, the protocol is PLAINTEXT, or no server answers at all (that is reported as
    unreachable elsewhere). kafka-python and aiokafka retry a refused login until their
    bootstrap times out and then only say "Unable to bootstrap"; this asks once. The
    password never appears in the line. From synchronous code (no event loop running);
    :func:`kafka_refusal` is the same for a coroutine."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    return asyncio.run(kafka_refusal(settings, timeout_s=timeout_s))


async def kafka_refusal(settings: Settings, *, timeout_s: float = 5.0) -> str | None:
    """:func:`kafka_handshake_problem` inside a running event loop (the API's producer
    asks when it cannot connect, so ``/readyz`` names a refused login, not an outage)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    problems = [await _handshake(settings, server.strip(), timeout_s)
                for server in settings.kafka_bootstrap.split(",") if server.strip()]
    if not problems or None in problems:
        return None
    return next((p for p in problems if p), None)


async def _handshake(settings: Settings, server: str, timeout_s: float) -> str | None:
    """The problem of one TLS/SASL handshake with ``server`` (``""`` when it did not
    answer, None when the handshake succeeded)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    host, _, port = server.rpartition(":")
    sasl = settings.kafka_security_protocol.startswith("SASL")
    try:
        conn = await asyncio.wait_for(create_conn(
            host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000),
            ssl_context=kafka_ssl_context(settings),
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism if sasl else "PLAIN",
            sasl_plain_username=settings.kafka_sasl_username if sasl else None,
            sasl_plain_password=settings.kafka_sasl_password if sasl else None), timeout_s)
    except ssl.SSLCertVerificationError as exc:
        return (f"Kafka at {server}: its TLS certificate is not trusted "
                f"({exc.verify_message}): set STREAMREC_KAFKA_SSL_CAFILE to the CA that "
                "signed it")
    except ssl.SSLError as exc:
        return f"Kafka at {server}: TLS handshake failed ({exc.reason or exc})"
    except KafkaError as exc:
        if sasl:
            return (f"Kafka at {server} refused the {settings.kafka_sasl_mechanism} login of "
                    f"STREAMREC_KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r}: {exc}")
        return f"Kafka at {server}: {settings.kafka_security_protocol} handshake failed: {exc}"
    except (OSError, TimeoutError, ValueError):
        return ""
    conn.close()
    return None


def redis_handshake_problem(settings: Settings, *, timeout_s: float = 5.0,
                            mode_only: bool = False) -> str | None:
    """One line naming why Redis refuses this process (the credentials in
    ``STREAMREC_REDIS_URL``, an untrusted TLS certificate, a Redis Cluster node named
    without ``STREAMREC_REDIS_MODE=cluster`` or the reverse), or None when it answers PING,
    or does not answer at all (reported as unreachable elsewhere). The password never
    appears in the line. ``mode_only``: only the mode mismatch (the API, which starts
    and answers from its fallback whatever else Redis does)."""
    from redis.exceptions import RedisClusterException, RedisError

    from core.redis_client import is_cluster, sync_client

    client = None
    try:
        client = sync_client(settings, socket_timeout=timeout_s,
                             socket_connect_timeout=timeout_s)
        client.ping()
        if not is_cluster(settings) and str(
                client.info("cluster").get("cluster_enabled")) == "1":
            return ("STREAMREC_REDIS_URL names a node of a Redis Cluster, which one client "
                    "cannot use (every key on another node answers MOVED): set "
                    "STREAMREC_REDIS_MODE=cluster")
    except RedisClusterException as exc:
        if "not enabled" in str(exc):
            return ("STREAMREC_REDIS_MODE=cluster, but STREAMREC_REDIS_URL names a Redis "
                    "that is not a cluster node: set STREAMREC_REDIS_MODE=standalone")
        return None  # no node answered: unreachable, reported elsewhere
    except RedisError as exc:
        return None if mode_only else redis_refusal(exc)
    finally:
        if client is not None:
            client.close()
    return None


def redis_refusal(exc: BaseException) -> str | None:
    """The one line for a Redis error that is a refused login or an untrusted TLS
    certificate (configuration to fix, not an outage), else None."""
    from redis.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError):
        return f"Redis refused the credentials in STREAMREC_REDIS_URL: {exc}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"Redis's TLS certificate is not trusted ({cause.verify_message}): set "
                "STREAMREC_REDIS_TLS_CA_FILE to the CA that signed it")
    return None
