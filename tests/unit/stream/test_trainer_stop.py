"""stream.trainer: how the worker reads its retrain child's end."""

from __future__ import annotations

import asyncio
import signal as sig
from typing import Any

import pytest

from core.settings import Settings
from stream import trainer


def test_a_retrain_stopped_with_the_worker_is_no_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``up --workers N`` and ``streamrec down`` signal the worker's process group, the
    retrain child too: that logged an ERROR with a traceback ("exited with -15") on an
    ordinary scale-in. A child ended by SIGTERM/SIGINT is RetrainStopped (logged as
    info); any other exit code is still a failure."""
    async def run(code: int) -> None:
        class Proc:
            returncode = code

            async def communicate(self) -> tuple[bytes, None]:
                return b"", None

        async def spawn(*_a: Any, **_k: Any) -> Proc:
            return Proc()
        monkeypatch.setattr(trainer.asyncio, "create_subprocess_exec", spawn)
        await trainer.run_retrain_process(Settings())

    for code in (-sig.SIGTERM, 128 + sig.SIGTERM, -sig.SIGINT):
        with pytest.raises(trainer.RetrainStopped):
            asyncio.run(run(code))
    with pytest.raises(trainer.RetrainFailed) as failed:
        asyncio.run(run(1))
    assert not isinstance(failed.value, trainer.RetrainStopped)
