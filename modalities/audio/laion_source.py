"""Reach modules of the installed `laion_clap` package without running its package `__init__`.

``laion_clap/__init__.py`` imports ``hook.py``, and ``laion_clap/training/data.py`` builds
Hugging Face tokenizers when imported: both touch the network. The HTSAT model itself
(``laion_clap/clap_module/htsat.py`` with its relative imports ``utils.py`` and
``feature_fusion.py``) needs none of that. `import_clap_module` imports such a file under a
private synthetic package whose ``__path__`` is laion_clap's ``clap_module`` folder, so Python's
ordinary import machinery resolves the relative imports and never executes an ``__init__.py``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

from anybind.errors import MissingDependencyError

SYNTHETIC_PACKAGE = "_anybind_laion_clap_module"
_lock = threading.Lock()


def laion_clap_root() -> Path:
    """The folder of the installed ``laion_clap`` package (found, not imported)."""
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the `htsat` audio encoder needs LAION-CLAP: pip install laion-clap")
    return Path(next(iter(spec.submodule_search_locations)))


def _synthetic_package() -> types.ModuleType:
    package = sys.modules.get(SYNTHETIC_PACKAGE)
    if package is None:
        folder = str(laion_clap_root() / "clap_module")
        spec = importlib.machinery.ModuleSpec(SYNTHETIC_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [folder]
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [folder]
        sys.modules[SYNTHETIC_PACKAGE] = package
    return package


def import_clap_module(name: str) -> types.ModuleType:
    """Import ``laion_clap/clap_module/<name>.py`` (e.g. ``"htsat"``) without any package ``__init__``."""
    with _lock:
        _synthetic_package()
        return importlib.import_module(f"{SYNTHETIC_PACKAGE}.{name}")


def clap_data_functions() -> dict[str, Any]:
    """laion_clap's own audio preprocessing functions, taken from ``training/data.py``.

    Returns ``get_audio_features``, ``get_mel``, ``float32_to_int16`` and ``int16_to_float32``
    compiled from that file's source, without executing its top level (which downloads
    tokenizers). Used as the reference path by parity tests and ``bench/audio_embed.py``.
    """
    import contextlib

    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchaudio
    import torchvision

    path = laion_clap_root() / "training" / "data.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wanted = {"get_audio_features", "get_mel", "float32_to_int16", "int16_to_float32"}
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    namespace: dict[str, Any] = {"np": np, "torch": torch, "F": F, "torchaudio": torchaudio,
                                 "torchvision": torchvision, "suppress": contextlib.suppress}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in wanted}
