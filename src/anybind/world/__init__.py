"""Deprecated alias of `anybind.demo.world` (the procedural world is demo data; it moved there).

``import anybind.world`` and ``from anybind.world.files import read_objects`` keep working and
warn once; new code imports `anybind.demo.world`.
"""

import importlib
import sys
import warnings

from anybind.demo.world import *  # noqa: F403  (the alias re-exports the public names)
from anybind.demo.world import __all__ as __all__

warnings.warn("`anybind.world` moved to `anybind.demo.world`; import it from there",
              DeprecationWarning, stacklevel=2)

for _name in ("captions", "config", "files", "generate", "render", "shapes", "sound"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"anybind.demo.world.{_name}")
