"""Fixtures of the API integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from core.kafka_tools import create_topics
from core.redis_client import sync_client
from core.settings import Settings


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """The test's topics exist."""
    create_topics(settings)
    return settings


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A decoding client of the test's Redis (a module may define its own ``r``)."""
    client = sync_client(settings, decode_responses=True)
    yield client
    client.close()
