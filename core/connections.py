"""Connection security from settings, in one place: Redis TLS and Kafka SSL/SASL.

Every client that connects (API producer, worker, CLI tools) takes its options from here,
so a deployment configures credentials and certificates once, through ``STREAMREC_*``.
Secrets (passwords, API keys) only ever travel to the client libraries; nothing here
logs them, and ``Settings.public_dict`` masks them for display.
"""

from __future__ import annotations

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
