"""Bundles: a folder with ``bundle.json`` (the model-config format `anybind.load` reads) and the
safetensors weights it names. A bundle is a complete model: ``anybind.load(folder)`` rebuilds
the anchor and every modality in it, with no other file needed besides what the anchor spec
points to (kept as absolute paths).

`write_bundle` is generic: it takes an anchor spec, modality entries and their state dicts,
and writes them atomically (built in a temp folder, then swapped in).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from anybind.model import BUNDLE_FILE, FORMAT_VERSION, MODEL_FORMAT, ModelConfig, parse_model_config
from anybind.atomic import atomic_save_safetensors, atomic_write_json, staged_folder

LOCAL_DIR = "local-dir:"
WEIGHTS_FOLDER = "weights"


def portable_anchor_spec(spec: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """`spec` with every string value that names an existing file/folder relative to `base_dir`
    made absolute (also after a ``local-dir:`` prefix), so it stays valid inside a bundle elsewhere."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, str) and base_dir is not None:
            prefix = LOCAL_DIR if value.startswith(LOCAL_DIR) else ""
            path = Path(value[len(prefix):]).expanduser()
            if not path.is_absolute() and (base_dir / path).exists():
                value = prefix + str((base_dir / path).resolve())
        out[key] = value
    return out


def base_modality_entries(config: ModelConfig, base_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The modality entries of an existing model config, with weights paths made absolute."""
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in config.modalities.items():
        entry = dict(entry or {})
        weights = entry.get("weights")
        if weights and base_dir is not None and not Path(weights).is_absolute():
            entry["weights"] = str((base_dir / weights).resolve())
        entries[name] = entry
    return entries


def write_bundle(folder: str | Path, *, anchor_spec: Mapping[str, Any],
                 modalities: Mapping[str, tuple[Mapping[str, Any], Mapping[str, torch.Tensor] | None]],
                 name: str | None = None, info: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle folder atomically and return its path.

    `modalities` maps a modality name to (its entry: `ModalityConfig` fields, its encoder state
    dict or None). State dicts are saved as ``weights/<name>.safetensors`` and the entry's
    ``weights`` points there; an entry whose ``weights`` is an existing file (and no state dict)
    gets that file copied in. The config is validated with `parse_model_config` before writing.
    """
    folder = Path(folder)
    with staged_folder(folder) as temp:
        entries: dict[str, dict[str, Any]] = {}
        for modality, (entry, state) in modalities.items():
            entry = dict(entry)
            relative = f"{WEIGHTS_FOLDER}/{modality}.safetensors"
            if state is not None:
                atomic_save_safetensors(temp / relative, state)
                entry["weights"] = relative
            elif entry.get("weights") and Path(entry["weights"]).is_file():
                (temp / WEIGHTS_FOLDER).mkdir(exist_ok=True)
                shutil.copyfile(entry["weights"], temp / relative)
                entry["weights"] = relative
            entries[modality] = entry
        data = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "name": name, "anchor": dict(anchor_spec),
                "modalities": entries, "info": dict(info or {})}
        parse_model_config(data, f"bundle {str(folder)!r}")
        atomic_write_json(temp / BUNDLE_FILE, data)
    return folder
