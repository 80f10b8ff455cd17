"""API keys and roles: ``X-API-Key`` checked against the keys configured per role.

Roles are ``tracking`` (events, identify), ``read`` (recommendations) and ``admin``
(catalog writes, operations; an admin key may call every endpoint). A missing or unknown
key is a 401, a known key of the wrong role a 403. With no key configured at all, auth is
off (the embedded demo) and ``KeyRing.warn_if_open`` says so loudly at startup.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from enum import StrEnum

from api.errors import Forbidden, Unauthorized
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

    def warn_if_open(self) -> None:
        """Log loudly when auth is off."""
        if not self.enabled:
            log.warning(
                "AUTH IS OFF: no API keys configured (STREAMREC_TRACKING_KEYS, "
                "STREAMREC_READ_KEYS, STREAMREC_ADMIN_KEYS) - every endpoint is open to "
                "anyone who can reach this port. Configure keys before exposing the API."
            )
