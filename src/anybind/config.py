"""Reading configs: presets, preprocessing constants and prompt templates live in `configs/` as data.

Data files are YAML or JSON. `from_dict` turns a mapping into a frozen dataclass and rejects
unknown or missing keys by name, so a typo in a config is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from anybind.errors import ConfigError, InputFileError, UnknownNameError, check_no_unknown_keys, unknown_name_message

T = TypeVar("T")
DATA_SUFFIXES = (".yaml", ".yml", ".json")


def anybind_home() -> Path:
    """anybind's cache folder (anchor-vector caches, built bundles): ``$ANYBIND_HOME``, default ``~/.cache/anybind``."""
    return Path(os.environ.get("ANYBIND_HOME", "~/.cache/anybind")).expanduser()


def configs_dir() -> Path:
    """The folder of shipped configs (`configs/` in the repo, `anybind/configs` when installed)."""
    return Path(str(resources.files("anybind.configs")))


def read_data_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON file into a dict; raise `InputFileError`/`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"config file {str(path)!r} does not exist" if not path.exists()
                             else f"config file {str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {str(path)!r} could not be parsed: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return data


_added_config_dirs: list[Path] = []  # folders from `add_config_dir`, searched after the shipped configs


def add_config_dir(path: str | Path) -> None:
    """Search `path` for named configs too, after the shipped ones (like open_clip's `add_model_config`).

    `path` has the shipped layout: ``presets/``, ``preprocess/<modality>/``, ``templates/``,
    ``classes/``... Plugin packages that ship a ``configs/`` folder next to their module are added
    by the registry when the plugin is discovered. Adding the same folder twice is a no-op.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"`path`: expected a config folder, got {str(folder)!r} "
                             f"({'not a folder' if folder.exists() else 'does not exist'})")
    folder = folder.resolve()
    if folder not in _added_config_dirs:
        _added_config_dirs.append(folder)


def config_dirs() -> list[Path]:
    """Every folder named configs are looked up in: the shipped `configs/` first, then added ones."""
    return [configs_dir(), *_added_config_dirs]


def find_named_config(folder: str, name: str, kind: str) -> Path:
    """The first `<config dir>/<folder>/<name>.{yaml,yml,json}` over `config_dirs()`.

    Raises `UnknownNameError` listing the names that exist in any of them.
    """
    known: set[str] = set()
    for root in config_dirs():
        base = root / folder
        for suffix in DATA_SUFFIXES:
            candidate = base / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        if base.is_dir():
            known.update(p.stem for p in base.glob("*") if p.suffix in DATA_SUFFIXES)
    raise UnknownNameError(unknown_name_message(kind, name, sorted(known)))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert YAML/JSON values to the dataclass field type (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is None:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args or [Any] * len(value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if len(args) != 2:
            return dict(value)
        return {_coerce(k, args[0], f"{where} key {k!r}"): _coerce(v, args[1], f"{where}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        return from_dict(annotation, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(annotation, type):
        if annotation is int and isinstance(value, bool):
            raise ConfigError(f"{where}: expected int, got {value!r}")
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build frozen dataclass `cls` from `data`, naming unknown, missing and mistyped keys.

    `where` names the source in messages, e.g. ``"configs/preprocess/audio/clap-48k.yaml"``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    check_no_unknown_keys(where, data.keys(), fields)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], f"{where}: `{name}`")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key `{name}`")
    return cls(**values)


def to_dict(instance: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(instance)))


def load_named(cls: type[T], folder: str, name_or_mapping: str | Mapping[str, Any], kind: str) -> T:
    """Load dataclass `cls` from a named file in `configs/<folder>/` or from a mapping.

    A named file holds exactly the dataclass fields (preprocessing dataclasses carry a
    ``version`` field, recorded with trained weights); a mapping is used as is.
    """
    if isinstance(name_or_mapping, Mapping):
        return from_dict(cls, name_or_mapping, kind)
    path = find_named_config(folder, name_or_mapping, kind)
    data = read_data_file(path)
    return from_dict(cls, data, f"{kind} config {path.name}")


def load_templates(name: str | Path) -> tuple[str, ...]:
    """Prompt templates (each holds one ``{}``) from a set name in ``configs/templates/`` or a file:
    ``.yaml``/``.yml``/``.json`` with a ``templates:`` list (the shipped format), or ``.txt`` with one
    template per line (blank lines and ``#`` comments skipped)."""
    path = Path(name).expanduser()
    if path.suffix.lower() in (".txt", *DATA_SUFFIXES):  # a file; set names carry no suffix
        where = f"template file {str(path)!r}"
        if not path.is_file():
            raise InputFileError(f"{where} does not exist" if not path.exists() else f"{where} is not a file")
        if path.suffix.lower() == ".txt":
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(f"{where} could not be read: {error}") from None
            templates: Any = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        else:
            templates = read_data_file(path).get("templates")
    else:
        path = find_named_config("templates", str(name), "template set")
        where = f"template set {path.name}"
        templates = read_data_file(path).get("templates")
    if not isinstance(templates, list) or not templates:
        raise ConfigError(f"{where}: expected a non-empty list of templates, got {templates!r}")
    for number, template in enumerate(templates):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ConfigError(f"{where}: template {number + 1} must be a string with exactly one '{{}}', "
                              f"got {template!r}")
    return tuple(templates)
