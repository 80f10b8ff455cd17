"""Field types shared by several schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from core.limits import MAX_ID_LEN, MAX_PRICE, id_problem


def valid_id(value: str) -> str:
    """``value`` when it obeys the id rule (``core.limits.id_problem``), else ValueError
    (pydantic and FastAPI turn it into a 422 entry)."""
    problem = id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: A user, anonymous, item, event or recommendation id: 1 to 256 characters, no control
#: characters (``core.limits.id_problem``; the serve script applies the same rule).
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LEN),
    AfterValidator(valid_id),
    Field(examples=["u42"]),
]

def not_a_bool(value: Any) -> Any:
    """``value`` unless it is a JSON ``true``/``false``, which pydantic would otherwise
    take as the number 1 or 0 (a client bug that would write price 1.0 or quantity 1)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


#: A finite, non-negative money amount.
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, examples=[9.99]),
                  BeforeValidator(not_a_bool)]
