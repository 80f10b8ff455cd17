"""Field types shared by several schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from core.limits import MAX_ID_LEN

#: A user, anonymous or item id: a non-empty string of at most ``MAX_ID_LEN`` characters.
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LEN),
    Field(examples=["u42"]),
]

#: A finite, non-negative money amount.
Price = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False, examples=[9.99])]
