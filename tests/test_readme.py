"""The README's commands and CI stay in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The bash commands of the README's set-up section, in order."""
    section = ROOT.joinpath("README.md").read_text().split("## Set up on a fresh machine")[1].split("\n## ")[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = ROOT.joinpath(".ci", "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
