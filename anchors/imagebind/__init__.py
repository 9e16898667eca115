"""The ``imagebind`` anchor: ImageBind's vision and text towers as a frozen anchor space.

ImageBind (Girdhar et al., CVPR 2023) maps image, text, audio, depth, thermal and IMU into one
space. This anchor loads an official checkpoint (``imagebind_huge.pth``, the state-dict layout
of the reference code) into anybind's own modules: vision and text serve the anchor; the
``imagebind`` encoders of audio, depth, thermal and IMU take their towers from the same file
(`ImageBindAnchor.modality_state`). Without a checkpoint the towers are seeded random init.

Spec (the ``anchor:`` block)::

    kind: imagebind
    checkpoint: imagebind_huge.pth   # official layout; none: seeded random init
    architecture: huge               # configs/anchors/imagebind/<name>.yaml, or a mapping of its fields

ImageBind's code and weights are licensed CC BY-NC-SA 4.0 (non-commercial); loading a checkpoint
prints a one-time notice, and `anybind info` and every bundle's ``bundle.json`` show it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anybind.anchor import (CLIP_INIT_LOGIT_SCALE, Anchor, AnchorIdentity, ImagePreprocess, sha256_file,
                            sha256_state_dict)
from anybind.anchors.imagebind.architecture import ImageBindArchitecture, PatchTower, TextTower
from anybind.anchors.imagebind.checkpoint import (
    MODALITIES,
    load_tower,
    logit_scale_of,
    read_checkpoint,
    split_by_modality,
)
from anybind.config import anybind_home, load_named
from anybind.errors import CheckpointError, InputFileError, UnknownNameError
from anybind.modality import Encoder, EncoderContext, NoConfig
from anybind.registry import register_anchor
from anybind.weights import seeded

IMAGEBIND_LICENSE = {
    "license": "CC BY-NC-SA 4.0",
    "url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "commercial_use": False,
    "notice": "ImageBind weights (Meta) are licensed CC BY-NC-SA 4.0: non-commercial use only, share alike.",
}
_noticed: set[str] = set()


def print_license_notice(license_info: Mapping[str, Any]) -> None:
    """Print a weights license notice to stderr once per process and license."""
    text = str(license_info.get("notice") or license_info.get("license"))
    if text not in _noticed:
        _noticed.add(text)
        print(f"anybind: {text} See {license_info.get('url', '')}", file=sys.stderr)


def find_checkpoint(name: str, base_dir: Path | None) -> Path:
    """The checkpoint file `name`: as given when absolute, else the first that exists of the config's
    folder (`base_dir`), the working directory and ``$ANYBIND_HOME/weights/``; raises listing them."""
    path = Path(name).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = ([base_dir / path] if base_dir is not None else []) + [Path.cwd() / path,
                                                                             anybind_home() / "weights" / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputFileError(f"`anchor.checkpoint`: ImageBind checkpoint {name!r} not found; looked at "
                         f"{', '.join(str(c) for c in candidates)}. anybind never downloads weights: fetch "
                         "imagebind_huge.pth from the ImageBind repository (CC BY-NC-SA 4.0) and put it in one "
                         "of those places or give its path")


@dataclass(frozen=True)
class ImageBindAnchorConfig:
    """The ``anchor:`` block for ``kind: imagebind``."""

    checkpoint: str | None = None  # official ImageBind .pth; None: seeded random init (tests)
    architecture: str | dict = "huge"  # configs/anchors/imagebind/<name>.yaml, or its fields
    name: str | None = None  # config name in the identity (default: the architecture name, or "custom")
    seed: int = 0  # random-init seed (only used without a checkpoint)


@register_anchor("imagebind")
class ImageBindAnchor(Anchor):
    """ImageBind's frozen vision and text towers; also holds the other modalities' checkpoint tensors."""

    Config = ImageBindAnchorConfig
    weights_license = "CC BY-NC-SA 4.0 (non-commercial)"

    def __init__(self, config: ImageBindAnchorConfig, base_dir: Path | None = None) -> None:
        super().__init__()
        self.config = config
        arch = load_named(ImageBindArchitecture, "anchors/imagebind", config.architecture, "imagebind architecture")
        self.architecture = arch
        # Find the file before building towers: a missing checkpoint fails fast, even for `huge`.
        path = find_checkpoint(config.checkpoint, base_dir) if config.checkpoint else None
        with seeded(config.seed):
            self.vision = PatchTower("vision", arch)
            self.text = TextTower(arch)
        self._states: dict[str, dict[str, torch.Tensor]] = {}
        self.checkpoint_path: Path | None = None
        logit_scale = CLIP_INIT_LOGIT_SCALE
        if path is not None:
            state = read_checkpoint(path, "anchor.checkpoint")
            self._states = split_by_modality(state)
            for modality, tower in (("vision", self.vision), ("text", self.text)):
                # A partial export (e.g. vision only) loads; using a missing tower raises naming it.
                if modality in self._states:
                    load_tower(tower, modality, self._states[modality], f"`anchor.checkpoint` {str(path)!r}")
            logit_scale = logit_scale_of(state, "text") or logit_scale
            self.checkpoint_path = path
            print_license_notice(IMAGEBIND_LICENSE)
        self.freeze()
        self.dim = arch.out_dim
        self.logit_scale = float(logit_scale)
        self.image_preprocess = ImagePreprocess(size=arch.image_size, mean=arch.image_mean, std=arch.image_std,
                                                interpolation="bicubic", resize_mode="shortest")
        from open_clip.tokenizer import SimpleTokenizer

        # ImageBind's tokenizer is CLIP's BPE (same vocabulary file, lower-cased, 77 tokens, end-of-text
        # kept last on truncation), which open_clip ships.
        self._tokenizer = SimpleTokenizer(context_length=arch.text_context)
        sha = sha256_file(self.checkpoint_path) if self.checkpoint_path else sha256_state_dict(self.state_dict())
        name = config.name or (config.architecture if isinstance(config.architecture, str) else "custom")
        self.identity = AnchorIdentity(kind="imagebind", config=name,
                                       tag=self.checkpoint_path.name if self.checkpoint_path else None,
                                       weights_sha256=sha)
        self.spec = self.spec_of(config)

    @property
    def checkpoint_modalities(self) -> list[str]:
        """The ImageBind modalities the checkpoint has keys for (empty without a checkpoint)."""
        return [m for m in MODALITIES if m in self._states]

    def modality_state(self, modality: str) -> dict[str, torch.Tensor]:
        """The checkpoint's official keys of `modality`; raises naming the modalities it does have."""
        if modality not in self._states:
            have = ", ".join(self.checkpoint_modalities) or "none"
            raise UnknownNameError(
                f"ImageBind checkpoint {str(self.checkpoint_path)!r} has no {modality} keys "
                f"(modality_*.{modality}.*); it holds: {have}. Use a checkpoint that includes {modality}, "
                "or train a different encoder for it.")
        return self._states[modality]

    def modality_logit_scale(self, modality: str) -> float | None:
        """The checkpoint's logit scale of `modality` (``min(exp(log_logit_scale), 100)``), or None."""
        state = self._states.get(modality, {})
        return logit_scale_of(state, modality)

    def weights_licenses(self) -> list[dict[str, Any]]:
        """The license of each weights file this anchor uses (``[]`` for random init)."""
        if self.checkpoint_path is None:
            return []
        return [{"file": str(self.checkpoint_path), **{k: v for k, v in IMAGEBIND_LICENSE.items() if k != "notice"}}]

    def _require(self, modality: str) -> None:
        if self.checkpoint_path is not None:
            self.modality_state(modality)  # raises naming what the checkpoint holds

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, D]`` vision-tower features."""
        self._require("vision")
        return self.vision(pixels)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Strings -> ``[B, 77]`` CLIP BPE token ids."""
        return self._tokenizer(texts)

    def encode_tokens(self, tokens: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, 77]`` token ids -> ``[B, D]`` text-tower features."""
        if not isinstance(tokens, torch.Tensor):
            raise CheckpointError("imagebind anchor: expected a tensor of token ids")
        self._require("text")
        return self.text(tokens)


def tower_from_anchor(anchor: Anchor, modality: str, argument: str) -> PatchTower:
    """A `PatchTower` for `modality` built to `anchor`'s architecture, loaded from its checkpoint when
    it has one (random init otherwise). Raises when `anchor` is not an ImageBind anchor."""
    from anybind.errors import ConfigError

    if not isinstance(anchor, ImageBindAnchor):
        raise ConfigError(f"`{argument}`: the imagebind encoder needs `anchor.kind: imagebind`, got "
                          f"{anchor.identity.kind!r} (its {modality} tower lives in an ImageBind checkpoint)")
    tower = PatchTower(modality, anchor.architecture)  # type: ignore[arg-type]
    if anchor.checkpoint_path is not None:
        load_tower(tower, modality, anchor.modality_state(modality), f"`anchor.checkpoint` {str(anchor.checkpoint_path)!r}")
    return tower


class ImageBindTowerEncoder(Encoder):
    """Base of the ``imagebind`` encoders: one ImageBind tower taken from the anchor's checkpoint.

    Subclasses set `tower_modality` (the ImageBind modality name); those whose loader gives a batch
    other than the tower's input tensor override `forward`.
    ``train: head`` trains the tower's final projection (`head_parameters`).
    """

    Config = NoConfig
    tower_modality: str

    def __init__(self, config: Any, context: EncoderContext) -> None:
        super().__init__(config, context)
        self.tower = tower_from_anchor(context.anchor, self.tower_modality, f"modalities.{self.tower_modality}.encoder")

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The tower's input tensor (thermal ``[B, 1, S, S]``, IMU ``[B, 6, 2000]``) -> ``[B, D]``."""
        return self.tower(batch)

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """The tower's output projection (what ``train: head`` optimizes)."""
        return list(self.tower.head.parameters())
