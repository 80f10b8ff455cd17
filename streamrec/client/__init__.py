"""Python client of the streamrec HTTP API: ``Client`` (blocking) and ``AsyncClient``.

```python
from streamrec.client import Client

with Client("http://127.0.0.1:8000", tracking_key="...", read_key="...") as sr:
    sr.track("view", user_id="u42", item_id="sku-1")
    sr.identify("anon-7f3a", "u42")
    for item in sr.recommendations("u42", n=5).items:
        print(item.item_id, item.score)
```

Events are checked against the API's schemas, given an id at ``track`` time, batched and
delivered in the background, retried with the same ids (one :class:`RetryPolicy`);
results are the models of ``schemas``; refusals raise the classes of
:mod:`streamrec.client.errors`. Guide: docs/python-client.md.
"""

from streamrec.client.aio import AsyncClient, ClientStats
from streamrec.client.errors import (
    ApiError,
    BadRequest,
    ClientClosed,
    ConnectionFailed,
    DeliveryError,
    Forbidden,
    InvalidPayload,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    StreamrecError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from streamrec.client.retry import RetryPolicy, parse_retry_after
from streamrec.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientClosed",
    "ClientStats",
    "ConnectionFailed",
    "DeliveryError",
    "Forbidden",
    "InvalidPayload",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "StreamrecError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "parse_retry_after",
]
