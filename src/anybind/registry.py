"""Name registries for modalities, encoders and anchors.

Built-ins register with decorators when `anybind.modalities` / `anybind.anchors` are imported.
Third-party plugins declare entry points in the groups ``anybind.modalities``,
``anybind.anchors`` and ``anybind.encoders`` (a package that adds only an encoder to an existing
modality); the entry point's target is imported (its decorators register what it defines) the
first time any registry is looked up. A plugin package may ship a ``configs/`` folder (presets,
``preprocess/<modality>/``, templates, class lists) beside its top-level module: it is added to
the config search path (`anybind.add_config_dir`). Duplicate names raise, naming both modules.
A plugin that fails to import or register is skipped with one warning naming its distribution
and its error, so one broken plugin never breaks the built-ins or the other plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import threading
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from anybind.errors import DuplicateNameError, UnknownNameError, unknown_name_message

if TYPE_CHECKING:
    from anybind.anchor import Anchor
    from anybind.modality import Encoder, Modality

T = TypeVar("T", bound=type)

MODALITY_ENTRY_POINT_GROUP = "anybind.modalities"
ANCHOR_ENTRY_POINT_GROUP = "anybind.anchors"
ENCODER_ENTRY_POINT_GROUP = "anybind.encoders"
_PLUGIN_HINT = "Is the plugin installed? See anybind.list_modalities() and anybind.list_anchors()."

_modalities: dict[str, type[Modality]] = {}
_encoders: dict[str, dict[str, type[Encoder]]] = {}
_anchors: dict[str, type[Anchor]] = {}
_discovered = False
_discovering = False
_warned_plugins: set[tuple[str, str]] = set()
_lock = threading.RLock()


def _origin(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _add(table: dict[str, Any], kind: str, name: str, obj: Any) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise DuplicateNameError(f"{kind} name must be a non-empty string without spaces, got {name!r}")
    previous = table.get(name)
    # Re-registering the very same definition (a module reload) is not a conflict.
    if previous is not None and _origin(previous) != _origin(obj):
        raise DuplicateNameError(
            f"{kind} {name!r} is registered twice: by {_origin(previous)} and by {_origin(obj)}"
        )
    table[name] = obj


def register_modality(name: str) -> Callable[[T], T]:
    """Class decorator registering a `Modality` subclass under `name` (e.g. ``"audio"``)."""

    def decorator(cls: T) -> T:
        with _lock:
            cls.name = name  # type: ignore[attr-defined]
            _add(_modalities, "modality", name, cls)
            _encoders.setdefault(name, {})
        return cls

    return decorator


def register_encoder(modality: str, name: str) -> Callable[[T], T]:
    """Class decorator registering an `Encoder` subclass as encoder `name` of `modality`."""

    def decorator(cls: T) -> T:
        with _lock:
            cls.modality = modality  # type: ignore[attr-defined]
            cls.encoder_name = name  # type: ignore[attr-defined]
            _add(_encoders.setdefault(modality, {}), f"{modality} encoder", name, cls)
        return cls

    return decorator


def register_anchor(name: str) -> Callable[[T], T]:
    """Class decorator registering an `Anchor` subclass under `name` (e.g. ``"openclip"``)."""

    def decorator(cls: T) -> T:
        with _lock:
            cls.kind = name  # type: ignore[attr-defined]
            _add(_anchors, "anchor", name, cls)
        return cls

    return decorator


def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of `group` (a seam tests can patch)."""
    return list(importlib.metadata.entry_points(group=group))


def _discover() -> None:
    """Import built-ins and entry-point plugins once; later calls return immediately."""
    global _discovered, _discovering
    with _lock:
        if _discovered or _discovering:
            return
        _discovering = True
        try:
            importlib.import_module("anybind.anchors")
            importlib.import_module("anybind.modalities")
            for group, table, register in (
                (ANCHOR_ENTRY_POINT_GROUP, _anchors, register_anchor),
                (MODALITY_ENTRY_POINT_GROUP, _modalities, register_modality),
                (ENCODER_ENTRY_POINT_GROUP, None, None),  # encoder modules register with their decorators
            ):
                for entry_point in entry_points(group):
                    try:
                        target = entry_point.load()
                        # A target that is a class not registered by its own decorator is
                        # registered under the entry point's name.
                        if register is not None and isinstance(target, type) and target not in table.values():
                            register(entry_point.name)(target)
                        _add_plugin_configs(target)
                    except Exception as error:  # a third-party plugin may fail in any way
                        _warn_broken_plugin(group, entry_point, error)
            _discovered = True
        finally:
            _discovering = False


def _add_plugin_configs(target: Any) -> None:
    """Add the ``configs/`` folder of the top-level package that defines `target`, if it has one."""
    from anybind.config import add_config_dir

    module_name = target.__name__ if isinstance(target, types.ModuleType) else getattr(target, "__module__", None)
    root = (module_name or "").split(".")[0]
    module = sys.modules.get(root)
    if not root or root == "anybind" or module is None:
        return
    for folder in getattr(module, "__path__", []):  # packages only; a plain module ships no config folder
        if (Path(folder) / "configs").is_dir():
            add_config_dir(Path(folder) / "configs")


class PluginWarning(UserWarning):
    """An installed plugin could not be loaded; it was skipped."""


def _warn_broken_plugin(group: str, entry_point: importlib.metadata.EntryPoint, error: Exception) -> None:
    """Warn once per (distribution, entry point) that a plugin failed and was skipped."""
    dist = getattr(entry_point, "dist", None)
    dist_name = f"{dist.name} {dist.version}" if dist is not None else "(unknown distribution)"
    key = (dist_name, f"{group}:{entry_point.name}")
    if key in _warned_plugins:
        return
    _warned_plugins.add(key)
    warnings.warn(f"anybind plugin {entry_point.name!r} ({entry_point.value}) of distribution {dist_name} in "
                  f"entry-point group {group!r} failed to load and was skipped: {type(error).__name__}: {error}. "
                  f"Fix or uninstall that distribution; everything else keeps working.", PluginWarning, stacklevel=4)


def unregister_modality(name: str) -> None:
    """Remove modality `name` and its encoders (for tests and interactive work)."""
    with _lock:
        _modalities.pop(name, None)
        _encoders.pop(name, None)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """``table[name]`` after plugin discovery; an unknown name raises `UnknownNameError` with suggestions."""
    _discover()
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message(kind, str(name), table, _PLUGIN_HINT)) from None


def get_modality(name: str) -> type[Modality]:
    """The `Modality` class registered as `name`; raises `UnknownNameError` with suggestions."""
    return _lookup(_modalities, "modality", name)


def get_encoder(modality: str, name: str) -> type[Encoder]:
    """The `Encoder` class registered as `name` for `modality`."""
    get_modality(modality)
    return _lookup(_encoders.get(modality, {}), f"{modality} encoder", name)


def get_anchor(name: str) -> type[Anchor]:
    """The `Anchor` class registered as `name` (e.g. ``"openclip"``)."""
    return _lookup(_anchors, "anchor", name)


def list_modalities() -> list[str]:
    """Names of every registered modality, sorted."""
    _discover()
    return sorted(_modalities)


def list_encoders(modality: str | None = None) -> list[str] | dict[str, list[str]]:
    """Encoder names of `modality` (sorted list), or of every modality (dict) when `modality` is None."""
    _discover()
    if modality is None:
        return {m: sorted(_encoders.get(m, {})) for m in sorted(_modalities)}
    get_modality(modality)
    return sorted(_encoders.get(modality, {}))


def list_anchors() -> list[str]:
    """Names of every registered anchor kind, sorted."""
    _discover()
    return sorted(_anchors)
