"""Fixtures of the tests that drive ``streamrec up`` as a user does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.streamrec.test_stack import Stack, stack_in


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own (directory, free API port); whatever it started is
    stopped at the end (Apache Kafka gets its controlled shutdown). test_stack.py's
    module-wide ``stack`` replaces it there."""
    with stack_in(tmp_path, down_timeout=120) as s:
        yield s
