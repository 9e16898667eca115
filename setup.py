"""Package discovery for the repo's four top-level folders (the rest of the metadata is in pyproject.toml).

The engine (`src/anybind`), the built-in plugins (`modalities/`, `anchors/`) and the configs ship as one
`anybind` package; every code package below them is found with `find_namespace_packages`, so a new
modality package needs no edit here.
"""

from setuptools import find_namespace_packages, setup

PACKAGE_DIRS = {"anybind": "src/anybind", "anybind.modalities": "modalities", "anybind.anchors": "anchors",
                "anybind.configs": "configs"}
CODE_ROOTS = ("anybind", "anybind.modalities", "anybind.anchors")  # configs/ is package data below its root
SKIP = ("__pycache__", "*.__pycache__", "*.egg-info")


def discovered_packages() -> list[str]:
    """Every package under the code roots (folders holding Python modules), plus the configs root."""
    packages = ["anybind.configs"]
    for root in CODE_ROOTS:
        packages.append(root)
        packages += [f"{root}.{name}" for name in find_namespace_packages(PACKAGE_DIRS[root], exclude=SKIP)]
    return packages


setup(package_dir=PACKAGE_DIRS, packages=discovered_packages())
