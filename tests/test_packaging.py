"""A wheel built from the repo ships the engine, the plugins, the configs and py.typed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The build needs no network: setuptools comes from the dev extra (no build isolation).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("anybind-*.whl")
    return path


def test_wheel_contains_every_package_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {
        "anybind/" + str(p.parent.relative_to(ROOT / "src" / "anybind")).replace(".", "")
        for p in (ROOT / "src" / "anybind").rglob("__init__.py")
    } | {"anybind/modalities/" + str(p.parent.relative_to(ROOT / "modalities")).replace(".", "")
         for p in (ROOT / "modalities").rglob("__init__.py")}
    for package in source_packages:
        prefix = package.rstrip("/") + "/__init__.py"
        assert prefix in names, f"{prefix} missing from the wheel: add it to pyproject's `packages`"
    assert "anybind/anchors/openclip.py" in names
    assert "anybind/configs/presets/tiny.yaml" in names
    assert "anybind/py.typed" in names
    shipped_configs = {n for n in names if n.startswith("anybind/configs/") and not n.endswith(".py")}
    repo_configs = {"anybind/configs/" + str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*")
                    if p.is_file() and p.suffix in (".yaml", ".yml", ".json", ".txt")}
    assert repo_configs <= shipped_configs, sorted(repo_configs - shipped_configs)


def test_installed_wheel_imports_plugins_and_loads_tiny(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    script = textwrap.dedent(f"""
        import sys
        # Drop the editable install's finder so only the scratch copy can be imported.
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path = [p for p in sys.path if "__editable__" not in p]
        sys.path.insert(0, {str(target)!r})
        import anybind, anybind.modalities, anybind.anchors
        assert anybind.__file__.startswith({str(target)!r}), anybind.__file__
        assert anybind.modalities.__file__.startswith({str(target)!r})
        model = anybind.load("tiny", device="cpu")
        print(model.embed("text", ["a dog"]).shape, sorted(anybind.list_modalities()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
