"""Request dependencies: the process's services, and role checks on ``X-API-Key``.

Everything a route needs comes from ``app.state.services`` (built by ``api.app``'s
lifespan), so tests override one thing: the settings handed to ``create_app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from redis.asyncio import Redis

from api.auth import HEADER, KeyRing, Role
from api.errors import ValidationFailed
from api.experiments import Experiments
from api.ingest import Ingestor
from api.list_query import RateCheck
from api.metrics import Metrics
from api.producer import EventProducer
from api.reader import Reader
from core.limits import MAX_EXCLUDE, MAX_ID_LEN
from core.redis_keys import RedisKeys
from core.settings import Settings

#: Most ids one ``exclude`` parameter may list.


@dataclass
class Services:
    """The long-lived objects of one API process."""

    settings: Settings
    keyring: KeyRing
    metrics: Metrics
    producer: EventProducer
    redis: Redis
    reader: Reader
    experiments: Experiments
    ingestor: Ingestor
    rate_checks: dict[tuple[Role, str], RateCheck | None] = field(default_factory=dict)

    def rate_check(self, role: Role, key_id: str | None) -> RateCheck | None:
        """The rate limit of ``key_id`` acting as ``role`` (None: unlimited or auth off).

        Each key may make ``rate_limit_{role}_per_s`` requests per second with a burst of
        one second's worth (GCRA in Redis, shared by every API process).
        """
        if key_id is None:
            return None
        cached = self.rate_checks.get((role, key_id), False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        per_s = float(getattr(self.settings, f"rate_limit_{role.value}_per_s"))
        check = None
        if per_s > 0:
            check = RateCheck(RedisKeys().rate_limit(role.value, key_id), 1.0 / per_s,
                              max(1.0, per_s))
        self.rate_checks[(role, key_id)] = check
        return check


def services_of(request: Request) -> Services:
    """The process's services (set up by the app's lifespan)."""
    services: Services = request.app.state.services
    return services


# Dependencies are ``async def`` although none awaits: FastAPI runs plain ``def``
# dependencies in a thread pool, a thread hand-off per dependency per request that
# more than halved the throughput of the recommendation endpoints.
async def get_services(request: Request) -> Services:
    """The process's services (set up by the app's lifespan)."""
    return services_of(request)


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return services_of(request).settings


async def get_reader(request: Request) -> Reader:
    """The Redis list reader."""
    return services_of(request).reader


async def get_ingestor(request: Request) -> Ingestor:
    """Validated writes to Kafka."""
    return services_of(request).ingestor


async def get_experiments(request: Request) -> Experiments:
    """Variant decisions and the experiment store (``api.experiments``)."""
    return services_of(request).experiments


SettingsDep = Annotated[Settings, Depends(get_settings)]
ExperimentsDep = Annotated[Experiments, Depends(get_experiments)]
ServicesDep = Annotated[Services, Depends(get_services)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]

api_key_header = APIKeyHeader(
    name=HEADER,
    scheme_name="ApiKey",
    auto_error=False,
    description="API key of the role the endpoint needs (tracking, read or admin)",
)


def require(role: Role) -> Callable[..., Awaitable[None]]:
    """A dependency admitting keys of ``role`` (or admin keys); 401/403 otherwise, and
    429 with ``Retry-After`` when the key is over its rate limit (tracking writes are
    charged per event by the ingestor instead: :mod:`api.tracking_limits`)."""

    async def check(request: Request,
                    key: Annotated[str | None, Security(api_key_header)]) -> None:
        services = services_of(request)
        ident = services.keyring.check(key, role)
        if role is Role.TRACKING:
            return
        rate = services.rate_check(role, ident)
        if rate is not None:
            await services.reader.check_rate(rate)

    check.__name__ = f"require_{role.value}_key"
    return check


async def read_access(request: Request,
                key: Annotated[str | None, Security(api_key_header)]) -> RateCheck | None:
    """Admit read (or admin) keys; the key's rate limit, checked by the serve script in
    the same Redis round trip as the list itself."""
    services = services_of(request)
    return services.rate_check(Role.READ, services.keyring.check(key, Role.READ))


ReadAccess = Annotated[RateCheck | None, Depends(read_access)]


#: The ``exclude`` query parameter as declared (one definition for every dependency).
ExcludeQuery = Annotated[
    list[str] | None,
    Query(description="item ids never to return, comma-separated (repeatable)",
          examples=["sku-1,sku-2"]),
]


def parse_exclude(
    exclude: ExcludeQuery = None,
) -> frozenset[str]:
    """The ``exclude`` query parameter as a set of ids (each 1..``MAX_ID_LEN`` characters)."""
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


async def exclude_param(
    exclude: ExcludeQuery = None,
) -> frozenset[str]:
    """:func:`parse_exclude` as an ``async`` dependency (no thread hand-off)."""
    return parse_exclude(exclude) if exclude else frozenset()


ExcludeDep = Annotated[frozenset[str], Depends(exclude_param)]
