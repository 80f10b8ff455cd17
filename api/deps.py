"""Request dependencies: the process's services, and role checks on ``X-API-Key``.

Everything a route needs comes from ``app.state.services`` (built by ``api.app``'s
lifespan), so tests override one thing: the settings handed to ``create_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from redis.asyncio import Redis

from api.auth import HEADER, KeyRing, Role
from api.errors import ValidationFailed
from api.ingest import Ingestor
from api.metrics import Metrics
from api.producer import EventProducer
from api.ranking import MAX_ID_LEN
from api.reader import Reader
from streamrec.settings import Settings

#: Most ids one ``exclude`` parameter may list.
MAX_EXCLUDE = 1000


@dataclass
class Services:
    """The long-lived objects of one API process."""

    settings: Settings
    keyring: KeyRing
    metrics: Metrics
    producer: EventProducer
    redis: Redis
    reader: Reader
    ingestor: Ingestor


def get_services(request: Request) -> Services:
    """The process's services (set up by the app's lifespan)."""
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return get_services(request).settings


def get_reader(request: Request) -> Reader:
    """The Redis list reader."""
    return get_services(request).reader


def get_ingestor(request: Request) -> Ingestor:
    """Validated writes to Kafka."""
    return get_services(request).ingestor


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]

api_key_header = APIKeyHeader(
    name=HEADER,
    scheme_name="ApiKey",
    auto_error=False,
    description="API key of the role the endpoint needs (tracking, read or admin)",
)


def require(role: Role) -> Callable[..., None]:
    """A dependency admitting keys of ``role`` (or admin keys); 401/403 otherwise."""

    def check(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
        get_services(request).keyring.check(key, role)

    check.__name__ = f"require_{role.value}_key"
    return check


def parse_exclude(
    exclude: Annotated[
        list[str] | None,
        Query(description="item ids never to return, comma-separated (repeatable)",
              examples=["sku-1,sku-2"]),
    ] = None,
) -> frozenset[str]:
    """The ``exclude`` query parameter as a set of ids (each 1..256 characters)."""
    parts = [part for value in exclude or () for part in value.split(",") if part]
    if len(parts) > MAX_EXCLUDE:
        raise ValidationFailed(
            f"exclude lists at most {MAX_EXCLUDE} ids",
            detail=[{"type": "too_long", "loc": ["query", "exclude"],
                     "msg": f"List should have at most {MAX_EXCLUDE} items"}],
        )
    ids: set[str] = set()
    for part in parts:
        if len(part) > MAX_ID_LEN:
            raise ValidationFailed(
                f"exclude ids are at most {MAX_ID_LEN} characters",
                detail=[{"type": "string_too_long", "loc": ["query", "exclude"],
                         "msg": f"String should have at most {MAX_ID_LEN} characters"}],
            )
        # "a, b" excludes "b" too; the exact id is kept as well.
        ids.update((part, part.strip()))
    ids.discard("")
    return frozenset(ids)


ExcludeDep = Annotated[frozenset[str], Depends(parse_exclude)]
