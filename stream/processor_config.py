"""The knobs of the worker's batch processor (``stream.processor``), taken from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import Settings
from recommender.abuse import AbusePolicy
from stream.bounds import StateBounds, setting_default, state_bounds
from stream.item_ops import abuse_policy


@dataclass
class ProcessorConfig:
    """The knobs the processor needs (taken from Settings by the worker)."""

    history_max: int = setting_default("history_max")
    cooc_window: int = setting_default("cooc_window")
    list_size: int = setting_default("list_size")
    trending_half_life_s: float = setting_default("trending_half_life_s")
    abuse: AbusePolicy | None = field(default_factory=AbusePolicy)
    #: Candidates read per source for the stored blend (``Settings.blend_depth``).
    blend_depth: int = setting_default("blend_depth")
    #: Add to the pipeline counters (processed/applied). Off for rebuild replays: the
    #: counters describe the live pipeline, and a replay must not inflate them.
    count_stats: bool = True
    #: Recently active entities re-listed after a model swap (``Settings.sweep_entities``;
    #: 0 = off, as in rebuild replays, which rebuild every list from its events anyway).
    sweep_entities: int = 0
    #: Most of them re-listed per batch (``Settings.sweep_per_batch``).
    sweep_per_batch: int = setting_default("sweep_per_batch")
    #: Only those refreshed this recently, in receive time (``Settings.sweep_window_s``).
    sweep_window_s: float = setting_default("sweep_window_s")
    #: At most ``sweep_per_batch`` swept per second beside batches, a quarter of that
    #: while behind (the worker's; tests and replays sweep per batch only).
    sweep_rate_limited: bool = False
    #: Longest a list waits while the worker is behind (``Settings.coalesce_max_delay_s``;
    #: 0 = lists never wait, as in rebuild replays).
    coalesce_max_delay_s: float = 0.0
    #: TTLs, caps and trims of the state the batches write (``stream.bounds``).
    bounds: StateBounds = field(default_factory=StateBounds)

    @property
    def bought_max(self) -> int:
        """Purchases a history remembers (the batch step's ``StepConfig.bought_max``)."""
        return self.bounds.bought_max

    @property
    def identify_max_links(self) -> int:
        """Users one anonymous id may be identified as (``StepConfig``)."""
        return self.bounds.identify_max_links

    @property
    def cart_max(self) -> int:
        """Cart items an anonymous history follows for its identify (``StepConfig``)."""
        return self.bounds.cart_max

    @classmethod
    def from_settings(cls, settings: Settings, *, replay: bool = False) -> ProcessorConfig:
        """The worker's knobs from ``settings``; ``replay`` for a rebuild from the log
        (no pipeline counters, no refresh sweep)."""
        sweep = 0 if replay else settings.sweep_entities
        return cls(history_max=settings.history_max, cooc_window=settings.cooc_window,
                   list_size=settings.list_size, blend_depth=settings.blend_depth,
                   trending_half_life_s=settings.trending_half_life_s,
                   abuse=abuse_policy(settings), count_stats=not replay,
                   sweep_entities=sweep, sweep_per_batch=settings.sweep_per_batch,
                   sweep_window_s=settings.sweep_window_s,
                   coalesce_max_delay_s=0.0 if replay else settings.coalesce_max_delay_s,
                   sweep_rate_limited=not replay,
                   bounds=state_bounds(settings))
