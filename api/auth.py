"""API keys and roles: ``X-API-Key`` checked against the keys configured per role.

Roles are ``tracking`` (events, identify), ``read`` (recommendations) and ``admin``
(catalog writes, operations; an admin key may call every endpoint). A missing or unknown
key is a 401, a known key of the wrong role a 403. With no key configured at all, auth is
off (the embedded demo) and ``KeyRing.warn_if_open`` says so loudly at startup.

Secure by default (:func:`check_config`, run when the app is built): keys shorter than
``core.limits.MIN_API_KEY_LEN`` characters or configured for two roles are refused, and
so is serving without any key on an address other than loopback unless
``STREAMREC_ALLOW_NO_AUTH=1``. With ``ops_require_key``, :class:`OpsKeyMiddleware`
puts ``/metrics`` behind an admin key and the API docs behind any key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from enum import StrEnum

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, Forbidden, Unauthorized, error_response
from core.limits import MIN_API_KEY_LEN
from core.logging_setup import NOT_LIMITED
from core.settings import Settings

log = logging.getLogger("streamrec.api")

HEADER = "X-API-Key"


class Role(StrEnum):
    """What a key may do."""

    TRACKING = "tracking"
    READ = "read"
    ADMIN = "admin"


def key_id(key: str) -> str:
    """A short, non-reversible name of a key (rate-limit state never stores the key)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class KeyRing:
    """The configured keys of every role, compared in constant time."""

    def __init__(self, keys: dict[Role, frozenset[str]]) -> None:
        self._keys = [
            (role, key.encode("utf-8"), key_id(key))
            for role, role_keys in keys.items() for key in role_keys
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Keys from ``STREAMREC_TRACKING_KEYS``, ``..._READ_KEYS``, ``..._ADMIN_KEYS``."""
        return cls(
            {
                Role.TRACKING: settings.tracking_key_set,
                Role.READ: settings.read_key_set,
                Role.ADMIN: settings.admin_key_set,
            }
        )

    @property
    def enabled(self) -> bool:
        """False when no key is configured: every request is allowed."""
        return bool(self._keys)

    def roles_of(self, presented: str) -> set[Role]:
        """The roles of a presented key (empty when unknown).

        Every configured key is compared, with ``hmac.compare_digest``, so the time taken
        does not depend on which key (or which prefix) matched.
        """
        # Starlette decodes header bytes as latin-1; this recovers the raw bytes.
        return self._match(presented)[0]

    def _match(self, presented: str) -> tuple[set[Role], str | None]:
        raw = presented.encode("latin-1", errors="replace")
        roles = set()
        matched = None
        for role, key, ident in self._keys:
            if hmac.compare_digest(raw, key):
                roles.add(role)
                matched = ident
        return roles, matched

    def check(self, presented: str | None, role: Role) -> str | None:
        """Raise ``Unauthorized`` or ``Forbidden`` unless ``presented`` may act as ``role``.

        Returns the key's id (:func:`key_id`, for per-key rate limits), or None when
        auth is off.
        """
        return self.authenticate(presented, role)[0]

    def authenticate(self, presented: str | None, role: Role) -> tuple[str | None, bool]:
        """:meth:`check`, also telling whether the key is an admin key."""
        if not self.enabled:
            return None, False
        if not presented:
            raise Unauthorized(f"missing {HEADER} header")
        roles, ident = self._match(presented)
        if not roles:
            raise Unauthorized("invalid API key")
        if role not in roles and Role.ADMIN not in roles:
            raise Forbidden(f"this API key may not use this endpoint (needs the {role} role)")
        return ident, Role.ADMIN in roles

    def check_tracking_only(self, presented: str) -> None:
        """Raise unless ``presented`` is a tracking key (nothing to check when auth is off).

        For keys that travel outside the header (``?key=``, a body ``"key"``: page-hide
        requests cannot set headers): an unknown key is a 401, a read or admin key a 403,
        since such keys never belong in a URL or a web page. Only the role is checked here;
        the caller still goes through :meth:`check` (and the rate limit) with the same key.
        """
        if not self.enabled:
            return
        roles, _ = self._match(presented)
        if not roles:
            raise Unauthorized("invalid API key")
        if Role.TRACKING not in roles:
            raise Forbidden(
                f"only tracking keys may be sent as ?key= or a body \"key\"; send "
                f"{'/'.join(sorted(roles))} keys in the {HEADER} header"
            )

    def warn_if_open(self) -> None:
        """Log loudly when auth is off."""
        if not self.enabled:
            log.warning(
                "AUTH IS OFF: no API keys configured (STREAMREC_TRACKING_KEYS, "
                "STREAMREC_READ_KEYS, STREAMREC_ADMIN_KEYS) - every endpoint is open to "
                "anyone who can reach this port. Configure keys before exposing the API.",
                extra=NOT_LIMITED,
            )


class InsecureConfig(ValueError):
    """Settings the API refuses to start with (the message says what to change)."""


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(settings: Settings) -> None:
    """Raise ``InsecureConfig`` unless the keys and bind address are safe to serve with.

    Refused: a key shorter than ``MIN_API_KEY_LEN`` characters (guessable), one key in two
    roles (a public tracking key that could also read or administer), and no key at all
    on a non-loopback ``api_host`` without ``allow_no_auth``. The message names the
    setting, never the key.
    """
    roles = {"TRACKING": settings.tracking_key_set, "READ": settings.read_key_set,
             "ADMIN": settings.admin_key_set}
    for role, keys in roles.items():
        short = [k for k in keys if len(k) < MIN_API_KEY_LEN]
        if short:
            raise InsecureConfig(
                f"STREAMREC_{role}_KEYS holds a key of {len(short[0])} characters; keys need "
                f"at least {MIN_API_KEY_LEN} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))')")
    names = list(roles)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if roles[first] & roles[second]:
                raise InsecureConfig(
                    f"the same key is configured in STREAMREC_{first}_KEYS and "
                    f"STREAMREC_{second}_KEYS; every role needs keys of its own (the "
                    "tracking key is public)")
    if not settings.auth_enabled and not is_loopback(settings.api_host) \
            and not settings.allow_no_auth:
        raise InsecureConfig(
            f"refusing to serve on {settings.api_host or '0.0.0.0'} without API keys: set "
            "STREAMREC_TRACKING_KEYS, STREAMREC_READ_KEYS and STREAMREC_ADMIN_KEYS, or "
            "STREAMREC_ALLOW_NO_AUTH=1 to serve an open API on purpose")


#: Paths ``ops_require_key`` protects → the role their key needs (None: any role).
PROTECTED_PATHS: dict[str, Role | None] = {
    "/metrics": Role.ADMIN, "/docs": None, "/docs/oauth2-redirect": None, "/redoc": None,
    "/openapi.json": None, "/": None,
}


class OpsKeyMiddleware:
    """``/metrics`` needs an admin key and the API docs any configured key (used when
    ``Settings.ops_require_key`` is on and auth is enabled)."""

    def __init__(self, app: ASGIApp, keyring: KeyRing) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in PROTECTED_PATHS:
            presented = None
            for name, value in scope.get("headers", ()):
                if name == b"x-api-key":
                    presented = value.decode("latin-1")
            try:
                role = PROTECTED_PATHS[path]
                if role is None:
                    if not presented or not self.keyring.roles_of(presented):
                        raise Unauthorized(f"{path} needs an API key ({HEADER})")
                else:
                    self.keyring.check(presented, role)
            except ApiError as exc:
                response = error_response(exc.status_code, exc.code, exc.message,
                                          headers=exc.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
