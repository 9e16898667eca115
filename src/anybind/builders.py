"""Registered bundle builders: the only code a config file may cause to run, named, never imported.

A *built preset* (such as ``default``) holds ``builder: <name>`` and ``args:``; `<name>` must be
registered here, by `register_builder` in anybind itself or by an installed package through the
entry-point group ``anybind.builders`` (installing that package is the opt-in). A config that
names anything else, e.g. ``"module:function"``, is a `ConfigError`: nothing is imported and
nothing is called.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from anybind.errors import ConfigError, DuplicateNameError, unknown_name_message
from anybind.registry import entry_points

BUILDER_ENTRY_POINT_GROUP = "anybind.builders"
BUILTIN_BUILDER_MODULES = ("anybind.demo",)  # anybind's own modules that register builders
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")  # no ":" or ".": a name is never a module path

Builder = Callable[..., Any]
F = TypeVar("F", bound=Builder)

_builders: dict[str, Builder] = {}
_discovered = False
_lock = threading.RLock()


def register_builder(name: str) -> Callable[[F], F]:
    """Decorator registering `function` as builder `name`.

    The function is called as ``function(rebuild=bool, **args)`` with the preset's ``args``
    and returns the folder of the bundle it built (or found in its cache).
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DuplicateNameError(f"builder name must match {NAME_PATTERN.pattern} (no ':' or '.'), got {name!r}")

    def decorator(function: F) -> F:
        with _lock:
            previous = _builders.get(name)
            origin = f"{function.__module__}.{function.__qualname__}"
            if previous is not None and f"{previous.__module__}.{previous.__qualname__}" != origin:
                raise DuplicateNameError(f"builder {name!r} is registered twice: by "
                                         f"{previous.__module__}.{previous.__qualname__} and by {origin}")
            _builders[name] = function
        return function

    return decorator


def _discover() -> None:
    """Import anybind's built-in builders and the ``anybind.builders`` entry points, once."""
    global _discovered
    with _lock:
        if _discovered:
            return
        for module in BUILTIN_BUILDER_MODULES:
            importlib.import_module(module)
        for entry_point in entry_points(BUILDER_ENTRY_POINT_GROUP):
            target = entry_point.load()
            if callable(target) and target not in _builders.values():
                register_builder(entry_point.name)(target)
        _discovered = True


def list_builders() -> list[str]:
    """Names of every registered builder, sorted."""
    _discover()
    return sorted(_builders)


def get_builder(name: Any, where: str) -> Builder:
    """The builder registered as `name`; a `ConfigError` naming `where` for anything else.

    A value that looks like an import path (``"module:function"``, ``"package.module"``) is
    refused before any lookup, so nothing a config file names is ever imported.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{where}: `builder` must be the name of a registered builder (config files are data: anybind "
            f"never imports or calls a module a config names), got {name!r}. Registered builders: "
            f"{', '.join(list_builders()) or '(none)'}; third-party builders register through the entry-point "
            f"group {BUILDER_ENTRY_POINT_GROUP!r}.")
    _discover()
    if name not in _builders:
        raise ConfigError(f"{where}: `builder`: " + unknown_name_message(
            "builder", name, _builders, f"Third-party builders register through the entry-point group "
                                        f"{BUILDER_ENTRY_POINT_GROUP!r}."))
    return _builders[name]


def run_builder(name: Any, args: Mapping[str, Any], rebuild: bool, where: str) -> Path:
    """Call builder `name` with a preset's `args` (checked against its keyword parameters) -> bundle folder."""
    builder = get_builder(name, where)
    if not isinstance(args, Mapping):
        raise ConfigError(f"{where}: `args` must be a mapping, got {type(args).__name__}")
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    allowed = [p for p in parameters if p != "rebuild"]
    unknown = [key for key in args if key == "rebuild" or (not takes_any and key not in parameters)]
    if unknown:
        raise ConfigError(f"{where}: builder {name!r} takes no argument(s) {', '.join(map(repr, unknown))} in "
                          f"`args`; it takes: {', '.join(allowed) or '(none)'}")
    return Path(builder(rebuild=rebuild, **dict(args)))
