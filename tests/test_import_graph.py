"""The engine's import graph: no plugin imports outside the registry, no model<->index/zero-shot cycle."""

import ast
from pathlib import Path

import pytest

import anybind
from anybind.embedder import Embedder

ENGINE = Path(anybind.__file__).parent
APPLICATIONS = ("cli", "demo")  # the applications on top of the engine may import plugins
PLUGIN_PACKAGES = ("anybind.anchors", "anybind.modalities")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in `path` (module level, functions, TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def engine_modules() -> list[Path]:
    return [path for path in sorted(ENGINE.rglob("*.py"))
            if path.relative_to(ENGINE).parts[0] not in APPLICATIONS]


@pytest.mark.parametrize("path", engine_modules(), ids=lambda path: str(path.relative_to(ENGINE)))
def test_engine_imports_no_plugin(path):
    plugins = sorted(name for name in imported_modules(path) if name.startswith(PLUGIN_PACKAGES))
    assert not plugins, f"{path.relative_to(ENGINE)} imports plugin modules {plugins}; use the registry"


@pytest.mark.parametrize("module", ["index/vector_index.py", "index/__init__.py", "zero_shot.py", "embedder.py"])
def test_index_and_zero_shot_do_not_import_model(module):
    assert "anybind.model" not in imported_modules(ENGINE / module)


def test_bound_model_is_an_embedder():
    model = anybind.load("tiny", device="cpu")
    assert isinstance(model, Embedder)
    assert not isinstance(object(), Embedder)


def test_trainers_import_no_plugin_at_run_time():
    """Beyond the source check above: importing the trainers (binding and LiT) in a fresh interpreter loads
    no plugin module; they reach the image modality and the `lit` anchor through the registry."""
    import subprocess
    import sys

    code = ("import sys, anybind.train.loop, anybind.train.lit, anybind.cli.train_anchor; "
            "print(sorted(m for m in sys.modules if m.startswith(('anybind.anchors', 'anybind.modalities'))))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
