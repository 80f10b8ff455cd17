"""The pure layer's config classes repeat the worker's defaults (``recommender`` may not
import ``core``): these tests hold each copy equal to the one place it is defined, so the
evaluator's replay and the worker cannot drift apart."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core.limits import SESSION_ITEMS
from core.settings import Settings
from recommender.batch_step import StepConfig
from recommender.evaluation.replay_model import AlsParams
from recommender.evaluation.worker_sim import StreamConfig
from stream.bounds import StateBounds
from stream.processor import RECENT_ITEMS, SIMILAR_ITEMS, ProcessorConfig

#: Fields that are deliberately not the setting's default, and why.
OFF: dict[str, str] = {
    "sweep_entities": "0 = no refresh sweep unless the worker or the evaluator asks",
    "coalesce_max_delay_s": "0 = no coalescing outside the worker",
    "foldin_candidates": "0 = the evaluator ranks every item unless asked",
    "retrain_growth": "0 = the evaluator retrains on its own schedule",
    "retrain_min_gap_s": "0 = as above",
    "bought_max": "None = a history remembers every purchase unless bounded",
}


def _shared_with_settings(cls: Any) -> list[tuple[str, Any]]:
    return [(f.name, f.default) for f in dataclasses.fields(cls)
            if f.name in Settings.model_fields and f.name not in OFF]


@pytest.mark.parametrize("cls", [StepConfig, StreamConfig, ProcessorConfig, StateBounds])
def test_config_defaults_are_the_settings_defaults(cls: Any) -> None:
    shared = _shared_with_settings(cls)
    assert shared, cls
    assert {name: default for name, default in shared} == {
        name: Settings.model_fields[name].default for name, _ in shared}


def test_the_evaluators_list_inputs_are_the_workers() -> None:
    config = StreamConfig()
    assert (config.session_items, config.recent_items, config.similar_items) == (
        SESSION_ITEMS, RECENT_ITEMS, SIMILAR_ITEMS)


def test_the_evaluators_als_parameters_are_the_settings_defaults() -> None:
    params = dataclasses.asdict(AlsParams())
    del params["decay_half_life_s"]  # None = recommender.weights' own default
    assert params == {name: Settings.model_fields[f"als_{name}"].default for name in params}
