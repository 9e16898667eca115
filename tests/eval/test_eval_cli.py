"""``anybind eval``: markdown by default, JSON with --json, a report file, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anybind.cli import main

from . import standins


def test_eval_cli_markdown_and_json_report_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = standins.esc50(tmp_path / "ESC-50-master")
    output = tmp_path / "report.json"
    assert main(["eval", "esc50", str(root), "--model", "tiny", "--device", "cpu", "--fold", "fold1,fold2",
                 "--resamples", "20", "--compare", "630k-audioset-best.pt", "--output", str(output)]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("### ESC-50 — tiny (audio, classification)")
    assert "| top1 fold1 |" in markdown and "LAION-AI/CLAP README" in markdown
    report = json.loads(output.read_text())
    assert report["format"] == "anybind.eval" and report["protocol"]["split"] == "fold1,fold2"
    assert report["metrics"][0]["n"] == 4 and report["published"][0]["value"] == 0.9275


def test_eval_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "esc50", str(tmp_path / "missing"), "--model", "tiny", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("anybind eval: error: `root`: expected the ESC-50 folder") and error.count("\n") == 1
