"""The command line the demo examples share (``--recipe NAME``), so each script is only what it shows."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from anybind.demo.bundle import DemoWorld, load_demo_world


def demo_world_from_command_line(doc: str, argv: Sequence[str] | None = None) -> DemoWorld:
    """Parse ``[--recipe NAME]`` (default ``default``) from `argv` (default: ``sys.argv``), the help text
    being the first line of `doc` (an example's docstring), and load that recipe's demo world
    (`load_demo_world`: builds the bundle on first use)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--recipe", default="default", help="demo recipe of the bundle (configs/demo/)")
    return load_demo_world(parser.parse_args(argv).recipe)
