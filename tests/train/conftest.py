"""Fixtures of the trainer tests: the toy modality (registered once) and a toy dataset."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOY_MODULE = "anybind_tests_toy_modality"


def load_toy_module() -> ModuleType:
    """Import tests/train/toy_modality.py under one fixed name (registers the ``toyvec`` modality)."""
    if TOY_MODULE in sys.modules:
        return sys.modules[TOY_MODULE]
    spec = importlib.util.spec_from_file_location(TOY_MODULE, Path(__file__).with_name("toy_modality.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[TOY_MODULE] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="session")
def toy() -> ModuleType:
    """The toy modality module."""
    return load_toy_module()


def write_anchor_only_config(path: Path) -> Path:
    """Write a model config holding only the tiny preset's anchor (no other modalities) to `path`."""
    import yaml

    from anybind.config import find_named_config, read_data_file

    spec = read_data_file(find_named_config("presets", "tiny", "preset"))
    spec["modalities"] = {}
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def tiny_anchor_file(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A model config with the tiny preset's anchor only: binding tests stay independent of the
    other modalities in the preset."""
    return write_anchor_only_config(tmp_path_factory.mktemp("base") / "tiny-anchor.yaml")


@pytest.fixture(scope="session")
def base_model(tiny_anchor_file: Path):  # type: ignore[no-untyped-def]
    """`anybind.load(tiny_anchor_file)` on CPU, loaded once (read-only)."""
    import anybind

    return anybind.load(tiny_anchor_file, device="cpu")


@pytest.fixture(scope="session")
def toy_data(toy: ModuleType, base_model, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A shared toy dataset (96 caption pairs + 32 image pairs); returns the manifest path. Read-only."""
    return toy.make_dataset(tmp_path_factory.mktemp("toy-data"), base_model)


def run_and_kill(argv: list[str], folder: Path, rows: int, timeout: float = 240.0) -> int:
    """Start `argv` (a training run writing ``<folder>/metrics.csv``), SIGKILL it once the metrics log
    has at least `rows` rows, and return the number of rows it had logged."""
    import os
    import signal
    import subprocess
    import time

    from anybind.train.run_dir import read_metrics

    metrics = folder / "metrics.csv"
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not (metrics.exists() and len(read_metrics(folder)) >= rows):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the child run made no progress"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    return len(read_metrics(folder))


@pytest.fixture(scope="session")
def sigkill_after_rows():  # type: ignore[no-untyped-def]
    """`run_and_kill`: run a training subprocess and SIGKILL it after N metrics rows (between checkpoints)."""
    return run_and_kill
