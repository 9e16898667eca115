"""The examples that need no demo bundle run as a user runs them (the demo ones: tests/demo/test_demo_ci.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def run_example(*argv: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / argv[0]), *argv[1:]], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_quickstart() -> None:
    output = run_example("quickstart.py")
    assert "unit norm" in output and "random-init" in output


def test_new_modality_binds_and_retrieves(tmp_path: Path) -> None:
    output = run_example("new_modality.py", "--steps", "30", "--out", str(tmp_path))
    recall, chance = map(float, re.search(r"R@1 = ([0-9.]+) \(chance ([0-9.]+)\)", output).groups())  # type: ignore[union-attr]
    assert recall > 2 * chance
    assert (tmp_path / "run" / "bundle" / "bundle.json").is_file()
