"""Bounded argparse types for the ``streamrec`` commands' numeric options and API URLs: a
bad value (0 where 1 is the least, a negative, a huge value, a word, NaN, a URL without
``http://``) is one argparse line and exit code 2, never a traceback, a division by zero
or a run that waits forever."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:,} and {high:,}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse


def number(low: float, high: float, *, allow_low: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (excluded unless ``allow_low``) to
    ``high``; also used for rates."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value >= low if allow_low else value > low
        if not (math.isfinite(value) and above and value <= high):
            bound = "from" if allow_low else "above"
            raise argparse.ArgumentTypeError(
                f"{text} is not {bound} {low:,.10g} up to {high:,.10g}")
        return value

    parse.__name__ = "number"
    return parse


def api_url(text: str) -> str:
    """An argparse type: the API's base URL, ``http://HOST[:PORT][/PREFIX]`` or
    ``https://...`` (the Python client's rule); ``foo`` or ``localhost:8000`` is one
    argparse line, not a traceback or a minute of retried connection errors."""
    from streamrec.client.wire import checked_base_url

    try:
        return checked_base_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


api_url.__name__ = "API URL"
