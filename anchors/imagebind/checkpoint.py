"""Reading the official ImageBind state-dict layout and splitting it into per-modality towers.

Official keys are ``modality_preprocessors.<m>.*`` (stems, cls tokens, positions),
``modality_trunks.<m>.*``, ``modality_heads.<m>.*`` and ``modality_postprocessors.<m>.*``
(logit scales), for m in vision, text, audio, depth, thermal, imu (1,311 keys in
``imagebind_huge.pth``). `KEY_RENAMES` maps them onto `PatchTower` / `TextTower` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from anybind.anchors.imagebind.architecture import fold_video_stem
from anybind.errors import CheckpointError, InputFileError
from anybind.weights import format_mismatch, shape_mismatch

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")
MAX_LOGIT_SCALE = 100.0  # ImageBind clips exp(log_logit_scale) at 100
LOGIT_SCALE_KEY = "modality_postprocessors.{}.1.log_logit_scale"

_STEM_PREFIX = {"vision": "rgbt_stem.proj.1.", "audio": "rgbt_stem.proj.", "thermal": "rgbt_stem.proj.",
                "depth": "depth_stem.proj.", "imu": "imu_stem.proj."}
_STEM_NORM_PREFIX = {"audio": "rgbt_stem.norm_layer.", "thermal": "rgbt_stem.norm_layer.",
                     "depth": "depth_stem.norm_layer.", "imu": "imu_stem.norm_layer."}
_HEAD_INDEX = {"vision": ("0.", "2."), "audio": ("0.", "2."), "depth": ("0.", "2."), "thermal": ("0.", "2."),
               "imu": ("0.", "3."), "text": ("proj.0.", "proj.1.")}  # (LayerNorm, projection) inside the head


def key_renames(modality: str) -> list[tuple[str, str]]:
    """(official prefix, tower prefix) pairs for `modality`, most specific first."""
    pre, trunk, head = (f"{group}.{modality}." for group in GROUPS[:3])
    norm_index, proj_index = _HEAD_INDEX[modality]
    pairs = [(f"{trunk}pre_transformer_layer.0.", "trunk.pre_norm."), (f"{trunk}blocks.", "trunk.blocks."),
             (f"{head}{norm_index}", "head.norm."), (f"{head}{proj_index}", "head.proj.")]
    if modality == "text":
        return pairs + [(f"{pre}token_embedding.", "token_embedding."), (f"{pre}pos_embed", "pos_embed")]
    pos = f"{pre}pos_embed" if modality == "imu" else f"{pre}pos_embedding_helper.pos_embed"
    pairs += [(f"{pre}{_STEM_PREFIX[modality]}", "stem."), (f"{pre}cls_token", "cls_token"), (pos, "pos_embed")]
    if modality in _STEM_NORM_PREFIX:
        pairs.append((f"{pre}{_STEM_NORM_PREFIX[modality]}", "stem_norm."))
    return pairs


def _rename(key: str, pairs: list[tuple[str, str]], reverse: bool = False) -> str | None:
    for official, ours in pairs:
        source, target = (ours, official) if reverse else (official, ours)
        if key.startswith(source):
            return target + key[len(source):]
    return None


def read_checkpoint(path: Path, argument: str) -> dict[str, torch.Tensor]:
    """The state dict of an official ImageBind ``.pth`` (plain, or under ``model``/``state_dict``),
    read with ``weights_only=True``; raises naming `argument` and the file."""
    if not path.is_file():
        raise InputFileError(f"`{argument}`: ImageBind checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # refused pickles, corrupt zips, truncated files
        raise CheckpointError(f"`{argument}`: {str(path)!r} is not a readable PyTorch checkpoint ({error})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"`{argument}`: {str(path)!r} does not hold a state dict of tensors")
    if not any(str(key).split(".")[0] in GROUPS for key in data):
        raise CheckpointError(f"`{argument}`: {str(path)!r} is not in the ImageBind layout (no keys under "
                              f"{', '.join(GROUPS)}); first keys: {list(data)[:3]}")
    return dict(data)


def split_by_modality(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Official keys grouped by modality (the second dotted component); others are left out."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 2 and parts[0] in GROUPS:
            out.setdefault(parts[1], {})[key] = value
    return out


def logit_scale_of(state: Mapping[str, torch.Tensor], modality: str) -> float | None:
    """``min(exp(log_logit_scale), 100)`` of `modality`'s postprocessor, or None when absent (vision)."""
    value = state.get(LOGIT_SCALE_KEY.format(modality))
    return None if value is None else min(math.exp(float(value)), MAX_LOGIT_SCALE)


def load_tower(tower: nn.Module, modality: str, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load official keys of `modality` into `tower` strictly; mismatches are named by official key.

    Raises `CheckpointError` listing missing keys, unexpected keys and the first shape mismatches.
    """
    pairs = key_renames(modality)
    expected = tower.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        if key.startswith("modality_postprocessors.") or key == f"modality_preprocessors.{modality}.mask":
            continue  # logit scales are data; the text causal mask is rebuilt
        ours = _rename(key, pairs)
        if ours is None or ours not in expected:
            unexpected.append(key)
            continue
        renamed[ours] = fold_video_stem(value) if modality == "vision" and ours == "stem.weight" and value.ndim == 5 \
            else value
    missing = [_rename(k, pairs, reverse=True) or k for k in expected if k not in renamed]
    shapes = [shape_mismatch(_rename(k, pairs, reverse=True) or k, v.shape, expected[k].shape)
              for k, v in sorted(renamed.items()) if v.shape != expected[k].shape]
    mismatch = format_mismatch(missing, unexpected, shapes)
    if mismatch:
        raise CheckpointError(f"{source}: the {modality} tower does not match the architecture config: {mismatch} "
                              "(is `anchor.architecture` right for this checkpoint?)")
    # Share the checkpoint's storage (no second copy of a multi-GB file) unless a dtype differs.
    assign = all(value.dtype == expected[key].dtype for key, value in renamed.items())
    tower.load_state_dict(renamed, strict=True, assign=assign)
