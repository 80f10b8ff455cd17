"""``ExperimentSpec``: what a PUT of an experiment accepts (API.md "Experiments")."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import ExperimentSpec


def spec(*weights: Any) -> dict[str, Any]:
    """A body with one variant per weight."""
    return {"variants": [{"name": f"v{i}", "weight": w, "serve": "personalized"}
                         for i, w in enumerate(weights)]}


@pytest.mark.parametrize("weights", [(True,), ("1",), ("0.5", 0.5), (0.5, [0.5]),
                                     (None, 1)])
def test_a_weight_is_a_json_number(weights: tuple[Any, ...]) -> None:
    # A stored experiment echoes what was sent: true or "0.5" would come back as 1.0 or
    # 0.5, a weight the admin never wrote (promotion shares refuse them alike).
    with pytest.raises(ValidationError, match="weight must be a number"):
        ExperimentSpec.model_validate(spec(*weights))


@pytest.mark.parametrize("weights", [(1,), (1.0,), (0.25, 0.75), (0.1,) * 10])
def test_numbers_summing_to_one_are_weights(weights: tuple[Any, ...]) -> None:
    parsed = ExperimentSpec.model_validate(spec(*weights))
    assert [v.weight for v in parsed.variants] == [float(w) for w in weights]
