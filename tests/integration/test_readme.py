"""The README's first example, executed: its ``curl`` commands run against a worker and an
API process (auth off, like ``streamrec up``) on the session's real broker and Redis, and
the answers match the ones the README shows under each command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from schemas import RecommendationList
from streamrec.stack.servers import spawn, stop_pid
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

README = Path(__file__).resolve().parents[2] / "README.md"
#: Where the README's example expects ``streamrec up``'s API.
DOCUMENTED_URL = "http://127.0.0.1:8000"


def example() -> list[tuple[str, str]]:
    """``(command, the answer shown under it)`` for each ``curl`` of the README's first
    shell block; a command runs on while a line ends in ``\\`` or a quote is open."""
    block = re.search(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None and "curl" in block.group(1), "README: no curl example on top"
    lines = iter(block.group(1).splitlines())
    steps: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("curl "):
            command = [line]
            while command[-1].endswith("\\") or "\n".join(command).count("'") % 2:
                command.append(next(lines))
            steps.append(("\n".join(command), ""))
        elif line.startswith("#") and steps:
            steps[-1] = (steps[-1][0], steps[-1][1] + line.lstrip("# "))
    return steps


@pytest.fixture
def api_url(settings: Settings, start_worker: Callable[..., Any], tmp_path: Path
            ) -> Iterator[str]:
    """A worker and an API process without keys (auth off), as ``streamrec up`` runs them."""
    s = settings.model_copy(update={"api_port": free_port()})
    start_worker()
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=tmp_path / "api.log",
                env=env_for_child(s))
    try:
        wait_for_port("127.0.0.1", s.api_port, timeout=30, proc=api)
        yield f"http://127.0.0.1:{s.api_port}"
    finally:
        stop_pid(api.pid)


def run(command: str, url: str) -> Any:
    """The command's JSON answer, with the documented address replaced by ``url``."""
    assert DOCUMENTED_URL in command
    proc = subprocess.run(["bash", "-c", command.replace(DOCUMENTED_URL, url)],
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(proc.stdout)


def shown(answer: str, field: str) -> list[str]:
    """Every value of ``"field":value`` in an answer as the README prints it."""
    return re.findall(rf'"{field}":"?([^",}}]*)', answer)


def test_the_readme_example_answers_as_shown(api_url: str) -> None:
    assert shutil.which("curl"), "the README example needs curl"
    (send, accepted), (read, listed) = example()
    assert run(send, api_url)["accepted"] == int(shown(accepted, "accepted")[0])

    def as_shown() -> dict[str, Any] | None:
        body = run(read, api_url)
        got = [(i["item_id"], str(i["score"]), i["reason"]) for i in body["items"]]
        want = list(zip(shown(listed, "item_id"), shown(listed, "score"),
                        shown(listed, "reason"), strict=True))
        return body if got == want else None

    body = wait_for(as_shown, 30, "the list the README shows")
    RecommendationList.model_validate(body)
    for field in ("source", "model_version", "context"):
        assert [body[field]] == shown(listed, field), field
    assert body["recommendation_id"].startswith(shown(listed, "recommendation_id")[0][:-1])
