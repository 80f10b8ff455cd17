"""The burst bench's no-op ceiling worker leaves nothing under ``$TMPDIR``: its Faust data
directory goes when the worker stops, however it stops (an empty ``bench-noop-<id>`` was
left behind by every ``bench ingest --burst`` run). Faust's worker is replaced by one that
makes the directory, as Faust does, and then ends; nothing connects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust.worker
import pytest

from streamrec.bench import noop_worker


class _EndingWorker:
    """Stands in for Faust's worker: makes the app's data directory, then ends with
    ``outcome`` (SystemExit is how SIGTERM ends Faust's worker)."""

    outcome: BaseException = SystemExit(0)

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.app = app

    def execute_from_commandline(self) -> None:
        Path(self.app.conf.datadir).mkdir(parents=True)
        raise self.outcome


@pytest.mark.parametrize("outcome", [SystemExit(0), RuntimeError("broker gone")],
                         ids=["stopped", "failed"])
def test_the_noop_worker_removes_its_data_directory_when_it_ends(
        outcome: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = "bench-noop-abc123"
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("STREAMREC_APP_ID", group)
    monkeypatch.setattr(_EndingWorker, "outcome", outcome)
    monkeypatch.setattr(faust.worker, "Worker", _EndingWorker)
    # Faust's patches stay out of this test process (other tests check the originals)
    monkeypatch.setattr("stream.faust_compat.install", lambda **_kw: None)
    from core.settings import get_settings
    get_settings.cache_clear()
    try:
        with pytest.raises(type(outcome)):
            noop_worker.main()
    finally:
        get_settings.cache_clear()
    assert noop_worker.data_dir(group) == tmp_path / group
    assert list(tmp_path.iterdir()) == []


def test_removing_an_absent_data_directory_is_fine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "bench-noop-x" / "v1").mkdir(parents=True)
    noop_worker.remove_data_dir("bench-noop-x")
    noop_worker.remove_data_dir("bench-noop-x")
    assert list(tmp_path.iterdir()) == []
