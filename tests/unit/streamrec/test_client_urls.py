"""Where the Python client sends its requests: the base URL as given (trailing slash,
path prefix), refused at once when it cannot be one; and read parameters too large for
any URL the API reads, refused before sending (the real API: tests/integration)."""

from __future__ import annotations

import time

import httpx
import pytest

from core.limits import MAX_URL_BYTES
from streamrec.client import AsyncClient, Client, InvalidPayload, RetryPolicy
from tests.unit.streamrec.test_client import FakeApi, client_for


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost:8000", "ftp://api:8000",
                                 "http://", "", "api/v1"])
def test_a_base_url_that_cannot_be_one_is_refused_at_once(url: str) -> None:
    # these raised nothing here; every request then failed with httpx's
    # UnsupportedProtocol, a transport error, retried ~50 s before ConnectionFailed
    started = time.monotonic()
    with pytest.raises(ValueError, match="base_url"):
        AsyncClient(url, retry=RetryPolicy())
    with pytest.raises(ValueError, match="base_url"):
        Client(url)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("url", "path"), [
    ("http://api", "/v1/popular"), ("http://api/", "/v1/popular"),
    ("http://api//", "/v1/popular"), ("https://api:8443/shop/", "/shop/v1/popular"),
    ("http://api/shop/streamrec", "/shop/streamrec/v1/popular")])
async def test_trailing_slashes_and_path_prefixes(url: str, path: str) -> None:
    api = FakeApi()
    async with AsyncClient(url, transport=httpx.MockTransport(api)) as sr:
        await sr.popular(3)
    assert [r.url.path for r in api.requests] == [path]


async def test_read_parameters_no_url_can_carry_are_refused_before_sending() -> None:
    # a 100,000-character id or exclude list raised httpx.InvalidURL, no StreamrecError;
    # a URL between the API's limit and httpx's went out and came back 414
    api = FakeApi()
    async with client_for(api) as sr:
        with pytest.raises(InvalidPayload, match="URL"):
            await sr.recommendations("u" * 100_000)
        with pytest.raises(InvalidPayload, match="URL"):
            await sr.recommendations("u", exclude=[f"x{k}" for k in range(100_000)])
        with pytest.raises(InvalidPayload, match=str(MAX_URL_BYTES)):
            await sr.similar("i" * (MAX_URL_BYTES - 20))
        assert api.requests == []
        long_id = "u" * 5000  # sent: the API answers such an id itself (422)
        await sr.recommendations(long_id)
        assert len(api.requests) == 1 and long_id in api.requests[0].url.path


async def test_an_id_no_url_can_carry_is_the_clients_own_error() -> None:
    """A lone surrogate in a path id or a parameter raised a bare UnicodeEncodeError
    (``track`` and ``identify`` already said InvalidPayload); nothing is sent."""
    api = FakeApi()
    async with client_for(api) as sr:
        with pytest.raises(InvalidPayload, match="Unicode"):
            await sr.recommendations("u\ud800")
        with pytest.raises(InvalidPayload, match="Unicode"):
            await sr.similar("i", user_id="u\ud800")
        with pytest.raises(InvalidPayload, match="Unicode"):
            await sr.popular(3, exclude=["x\ud800"])
        assert api.requests == []
