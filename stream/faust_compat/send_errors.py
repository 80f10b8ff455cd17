"""A refused send is handled once, by the worker, without asyncio's noise.

Faust hands each record to aiokafka with a :class:`~faust.types.tuples.FutureMessage`
of its own; when aiokafka's send fails, ``Topic._on_published`` sets the exception on
that future, logs one WARNING naming the topic and the error, and calls the sensors'
``on_send_error``. No caller awaits that future (``topic.send`` returns aiokafka's, and
``send_soon``'s buffer drops it once sent), so each refused record also ended as asyncio's
``FutureMessage exception was never retrieved`` with a traceback when it was collected.

The worker's sensor :class:`stream.deliveries.SendWatch` holds every failed send and
sends it again (``stream.deliveries.settle``), so the failure is handled: :func:`install`
wraps ``_on_published`` to retrieve the exception once the sensors have seen it. Whoever
does await the future still gets the exception; a cancelled send propagates as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from faust.topics import Topic

_installed = False


def _retrieving_failures(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def on_published(self: Any, fut: Any, message: Any, producer: Any, state: Any) -> None:
        original(self, fut, message=message, producer=producer, state=state)
        if message.done() and not message.cancelled():
            message.exception()  # marks it retrieved: the sensors took the failure

    return on_published


def install() -> None:
    """Patch Faust's ``Topic._on_published`` (idempotent; call before the app runs)."""
    global _installed
    if _installed:
        return
    Topic._on_published = _retrieving_failures(Topic._on_published)  # type: ignore[method-assign]
    _installed = True
