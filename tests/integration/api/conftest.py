"""Fixtures of the API integration tests."""

from __future__ import annotations

import pytest

from core.kafka_tools import create_topics
from core.settings import Settings


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """The test's topics exist."""
    create_topics(settings)
    return settings
