"""The CLI's waits share one bound, ``streamrec.cli.MAX_TIMEOUT_S`` (a day): every
``--timeout`` and ``train --busy-wait``."""

from __future__ import annotations

import pytest

from streamrec.cli import main


@pytest.mark.parametrize("option", ["--timeout", "--busy-wait"])
def test_every_wait_of_train_has_the_one_bound(
        option: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streamrec.cli.MAX_TIMEOUT_S", 60.0)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", option, "61"])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
