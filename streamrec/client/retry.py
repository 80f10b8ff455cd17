"""The one retry rule of the Python client (and so of every streamrec tool that talks HTTP).

Retried: no answer at all (connection refused or reset, timeout), ``408``, ``429`` and
every ``5xx``; each retry sends the very same request (same bytes, so the same event
ids: the API and worker drop replays). The wait is the server's ``Retry-After`` when it
sent one (seconds or an HTTP date, capped at ``max_retry_after_s``), otherwise an
exponential backoff with jitter: ``base_delay_s × 2^(retry-1)``, capped at
``max_delay_s``, times a random factor in [0.5, 1). After ``max_retries`` retries the
client gives up and raises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from now (delta seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN → None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request and how long to wait first (see the module doc)."""

    max_retries: int = 8
    base_delay_s: float = 0.25
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry bounds must not be negative")

    @staticmethod
    def retryable(status: int) -> bool:
        """Whether an answer with ``status`` is worth the same request again."""
        return status in (408, 429) or status >= 500

    def next_wait(self, attempt: int, status: int | None,
                  retry_after: str | None = None) -> float | None:
        """After failed attempt number ``attempt`` (0 for the first) with answer
        ``status`` (None: no answer at all), the seconds to wait before trying again,
        or None when this failure is final (not worth retrying, or retries used up).
        Every loop that retries a request asks this one question."""
        if status is not None and not self.retryable(status):
            return None
        if attempt >= self.max_retries:
            return None
        return self.delay(attempt + 1, retry_after)

    def delay(self, retry: int, retry_after: str | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        server = parse_retry_after(retry_after)
        if server is not None:
            return min(server, self.max_retry_after_s)
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, retry - 1))
        return backoff * (0.5 + 0.5 * (rng or random).random())
