"""Model configs as data: the `ModelConfig` schema, and resolving what `anybind.load` is given (a preset
name, a config file, a bundle folder or a mapping) into a config, building a built preset first.

`anybind.model` builds a `BoundModel` from what this module resolves; nothing here builds encoders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybind.builders import run_builder
from anybind.config import find_named_config, from_dict, read_data_file
from anybind.errors import ConfigError, InputError, InputFileError, UnknownNameError

BUNDLE_FILE = "bundle.json"
MODEL_FORMAT = "anybind.model"
FORMAT_VERSION = 1
ANCHOR_MODALITIES = ("image", "text")


@dataclass(frozen=True)
class ModalityConfig:
    """One modality's entry under ``modalities:`` in a model config."""

    encoder: str | None = None  # registered encoder name (default: the modality's default)
    encoder_args: dict = field(default_factory=dict)  # fields of the encoder's Config dataclass
    preprocess: str | dict | None = None  # config name in configs/preprocess/<modality>/, or fields
    weights: str | None = None  # safetensors file of the encoder (relative to the bundle folder)
    logit_scale: float | None = None  # multiplies cosine similarities in zero-shot (default: anchor's)
    templates: str | None = None  # prompt template set in configs/templates/ (default: modality's)
    seed: int = 0  # seed of the random init before `weights` are loaded


@dataclass(frozen=True)
class ModelConfig:
    """A whole model config: the anchor and the bound modalities."""

    anchor: dict  # the anchor's spec: {"kind": "openclip", ...}
    modalities: dict = field(default_factory=dict)  # name -> ModalityConfig fields
    format: str = MODEL_FORMAT
    version: int = FORMAT_VERSION
    name: str | None = None  # preset or bundle name, for display
    info: dict = field(default_factory=dict)  # free-form provenance (training run, metrics)


def parse_model_config(data: Mapping[str, Any], where: str) -> ModelConfig:
    """Validate a model-config mapping into `ModelConfig`, naming unknown keys and bad values."""
    config = from_dict(ModelConfig, data, where)
    if config.format != MODEL_FORMAT:
        raise ConfigError(f"{where}: `format` must be {MODEL_FORMAT!r}, got {config.format!r}")
    if config.version > FORMAT_VERSION:
        raise ConfigError(f"{where}: written by a newer anybind (format version {config.version} > "
                          f"{FORMAT_VERSION}); upgrade anybind")
    if "kind" not in config.anchor:
        raise ConfigError(f"{where}: `anchor` needs a `kind` (one of the registered anchors, e.g. 'openclip')")
    for name, entry in config.modalities.items():
        if name in ANCHOR_MODALITIES:
            raise ConfigError(f"{where}: `modalities.{name}` is served by the anchor and cannot be configured")
        from_dict(ModalityConfig, entry or {}, f"{where}: `modalities.{name}`")
    return config


@dataclass(frozen=True)
class BuiltPreset:
    """A preset whose model is built (trained) on first use and cached, e.g. ``default``.

    The preset file holds ``builder: <name>`` and ``args``; `<name>` is a builder registered in
    `anybind.builders` (never an import path: config files are data). The builder is called as
    ``builder(rebuild=..., **args)`` and returns the folder of a bundle it made.
    """

    builder: str  # name of a registered builder (see anybind.builders.list_builders())
    args: dict = field(default_factory=dict)  # keyword arguments of the builder
    description: str = ""


def _run_builder(data: Mapping[str, Any], where: str, rebuild: bool) -> Path:
    preset = from_dict(BuiltPreset, data, where)
    return run_builder(preset.builder, preset.args, rebuild, where)


def resolve_spec(spec: str | Path | Mapping[str, Any], rebuild: bool = False) -> tuple[ModelConfig, Path | None]:
    """A preset name, config file, bundle folder or mapping -> (config, folder relative paths start from).

    A built preset (see `BuiltPreset`) is built or fetched from its cache first; `rebuild`
    makes it build again.
    """
    if isinstance(spec, Mapping):
        return parse_model_config(spec, "model config"), None
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise InputError(f"`spec`: expected a preset name, config file or bundle folder, got {spec!r}")
    path = Path(spec).expanduser()
    if path.is_dir():
        bundle = path / BUNDLE_FILE
        if not bundle.is_file():
            raise InputFileError(f"`spec`: folder {str(path)!r} is not an anybind bundle (no {BUNDLE_FILE})")
        return parse_model_config(read_data_file(bundle), str(bundle)), path
    if path.suffix in (".yaml", ".yml", ".json"):
        where, data = str(path), read_data_file(path)
    elif path.exists():
        raise InputFileError(f"`spec`: expected a .yaml/.json config or a bundle folder, got {str(path)!r}")
    else:
        try:
            path = find_named_config("presets", str(spec), "preset")
        except UnknownNameError as error:
            raise UnknownNameError(f"{error} (`spec` may also be a config file or a bundle folder)") from None
        where, data = f"preset {str(spec)!r}", read_data_file(path)
    if "builder" in data:
        return resolve_spec(_run_builder(data, where, rebuild))
    return parse_model_config(data, where), path.parent


def spec_reference(spec: str | Path | Mapping[str, Any]) -> str | None:
    """How to name the model `spec` again later (e.g. in an index manifest): an existing config file
    or bundle folder as an absolute path, a preset name as given; None for an in-memory mapping."""
    if isinstance(spec, Mapping):
        return None
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else str(spec)
