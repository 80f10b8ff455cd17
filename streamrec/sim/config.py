"""What ``streamrec simulate`` runs and what it reports: :class:`SimulationConfig`,
:class:`SimulationReport` and :class:`SimulationError` (no I/O here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.limits import MAX_BATCH_EVENTS
from streamrec.client import RetryPolicy


@dataclass
class SimulationConfig:
    """What to simulate and where. ``max_events`` (when set) replaces ``duration_s``.

    ``rate`` is events per second (0 = as fast as the API accepts them); ``batch_size``
    above the API's limit of 500 is capped at 500. ``catalog=False`` skips every admin
    write (the catalog post and stock churn), e.g. when a previous run posted it.
    ``retry`` is the client's retry rule (:class:`streamrec.client.RetryPolicy`).
    ``seed`` fixes the shop and its traffic; ``id_salt`` its event ids (None = fresh ids
    on every run, so running twice against one stack sends new events both times).
    """

    api_url: str = "http://127.0.0.1:8000"
    rate: float = 200.0
    duration_s: float = 30.0
    max_events: int | None = None
    users: int = 300
    items: int = 500
    out_of_stock: float = 0.05
    anonymous_share: float = 0.2
    batch_size: int = 50
    seed: int = 42
    id_salt: int | None = None
    tracking_key: str = ""
    admin_key: str = ""
    catalog: bool = True
    progress: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.duration_s < 0:
            raise ValueError("rate and duration_s must not be negative")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError("max_events must not be negative")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def effective_batch_size(self) -> int:
        """Events per request: ``batch_size`` capped at the API's limit."""
        return min(self.batch_size, MAX_BATCH_EVENTS)

    @property
    def event_budget(self) -> int | None:
        """Events to send: ``max_events``, else ``rate × duration``; None = until time's up."""
        if self.max_events is not None:
            return self.max_events
        return round(self.rate * self.duration_s) if self.rate > 0 else None


@dataclass
class SimulationReport:
    """Outcome of a run; every count is of requests unless it says events.

    ``rejected_4xx`` counts requests the API finally refused (4xx other than 429),
    ``errors_5xx`` requests that still failed after every retry (5xx, 429 or no
    connection), ``retries`` every repeated attempt, ``batches`` the event batches the
    client delivered (or gave up on). ``users`` are the user ids that
    appeared (events or identify), ``items`` the whole catalog, ``out_of_stock_items``
    the items the API confirmed as out of stock at the end.
    """

    events_sent: int = 0
    events_accepted: int = 0
    batches: int = 0
    rejected_4xx: int = 0
    errors_5xx: int = 0
    retries: int = 0
    identifies: int = 0
    catalog_items: int = 0
    stock_changes: int = 0
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    out_of_stock_items: list[str] = field(default_factory=list)
    event_types: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every event accepted and no request failed."""
        return (
            self.events_accepted == self.events_sent
            and self.rejected_4xx == 0
            and self.errors_5xx == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """Two human-readable lines."""
        return (
            f"sent {self.events_sent} events in {self.elapsed_s:.1f} s "
            f"({self.achieved_rate:.0f} accepted/s): {self.events_accepted} accepted in "
            f"{self.batches} batches; {self.rejected_4xx} rejected (4xx), "
            f"{self.errors_5xx} failed (5xx/connection), {self.retries} retries\n"
            f"catalog {self.catalog_items} items ({len(self.out_of_stock_items)} out of stock), "
            f"{self.stock_changes} stock changes; {len(self.users)} users, "
            f"{self.identifies} identify calls"
        )


class SimulationError(RuntimeError):
    """The run cannot go on: API unreachable, key refused, or catalog not accepted."""
