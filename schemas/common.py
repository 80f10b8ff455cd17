"""Field types shared by several schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

#: A user, anonymous or item id: a non-empty string of at most 256 characters.
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    Field(examples=["u42"]),
]

#: A finite, non-negative money amount.
Price = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False, examples=[9.99])]
