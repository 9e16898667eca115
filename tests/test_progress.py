"""Progress bars only on a terminal; under a pipe or in CI one summary line per stage."""

from __future__ import annotations

import io
from typing import Any

import pytest
from tqdm import tqdm

from anybind.progress import StageSummary, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_stage_prints_one_line() -> None:
    log = io.StringIO()
    bar = progress_bar(total=5000, desc="bind audio", unit="step", file=log)
    assert isinstance(bar, StageSummary)
    for _ in range(5000):
        bar.update(1)
    bar.set_postfix(loss="0.1234")
    bar.close()
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.count("\n") == 1
    assert text.startswith("bind audio: 5000/5000 step in ") and text.rstrip().endswith("loss 0.1234")


def test_iterating_off_a_terminal_counts_and_summarizes() -> None:
    log = io.StringIO()
    assert list(progress_bar(range(7), desc="check inputs", unit="chunk", file=log)) == list(range(7))
    assert log.getvalue().startswith("check inputs: 7/7 chunk in ")


def test_a_terminal_gets_a_tqdm_bar_and_disable_prints_nothing() -> None:
    terminal = FakeTerminal()
    with progress_bar(total=3, desc="embed", file=terminal) as bar:
        assert isinstance(bar, tqdm)
        bar.update(3)
    assert "\r" in terminal.getvalue()
    quiet = io.StringIO()
    with progress_bar(total=3, desc="embed", file=quiet, disable=True) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_embed_under_a_pipe_writes_one_summary_line(tiny_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    tiny_model.embed("text", [f"caption {i}" for i in range(40)], batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and err.startswith("embed text: 40/40 item in ")
