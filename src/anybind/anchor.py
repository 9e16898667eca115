"""The anchor: a frozen embedding space with an image tower and a text tower.

An anchor kind (e.g. ``openclip``) is a subclass of `Anchor` registered with
`anybind.register_anchor`. Every anchor has an `AnchorIdentity`; vectors of different
identities never mix.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from anybind.config import from_dict

CLIP_INIT_LOGIT_SCALE = 1 / 0.07  # CLIP (Radford et al. 2021): temperature initialized to 0.07


@dataclass(frozen=True)
class AnchorIdentity:
    """What makes two anchor spaces the same: kind, architecture config, weights tag and hash."""

    kind: str  # registered anchor kind, e.g. "openclip"
    config: str  # architecture name, e.g. "ViT-B-32" or "tiny"
    tag: str | None  # pretrained tag or weights file name; None for seeded random init
    weights_sha256: str  # sha256 of the weights file, or of the state dict for random init

    @property
    def key(self) -> str:
        """A short string naming this anchor space, carried by `Embeddings` and indexes."""
        return f"{self.kind}:{self.config}:{self.tag or 'random-init'}:{self.weights_sha256[:16]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnchorIdentity:
        """Inverse of `to_dict`."""
        return cls(**{k: data[k] for k in ("kind", "config", "tag", "weights_sha256")})


@dataclass(frozen=True)
class ImagePreprocess:
    """How the anchor's image tower wants its pixels (read from the anchor's own weights/config)."""

    size: int  # square input side in pixels
    mean: tuple[float, float, float]  # per-channel mean subtracted after scaling to [0, 1]
    std: tuple[float, float, float]  # per-channel std divided after the mean
    interpolation: str = "bicubic"  # resize filter
    resize_mode: str = "shortest"  # "shortest": resize shortest side then center crop; "squash"
    version: int = 1


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 over a state dict's names, dtypes, shapes and bytes, in sorted key order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class Anchor(nn.Module, abc.ABC):
    """A frozen image+text embedding space. Subclasses implement the four abstract methods.

    Attributes set by subclasses: `identity`, `dim` (embedding width D), `image_preprocess`,
    `logit_scale` (the anchor's own image-text logit scale, a float, never applied to vectors),
    and `spec` (the JSON-ready config that rebuilds it).
    """

    kind: ClassVar[str]
    # The frozen dataclass of the ``anchor:`` block's fields (besides ``kind``); the default `from_spec`
    # parses the block into it and calls ``cls(config, base_dir=base_dir)``.
    Config: ClassVar[type[Any] | None] = None
    # The license of this anchor kind's official weights when one license covers them all (shown by
    # `anybind info`), else None.
    weights_license: ClassVar[str | None] = None
    identity: AnchorIdentity
    dim: int
    image_preprocess: ImagePreprocess
    logit_scale: float
    spec: dict[str, Any]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], base_dir: Path | None = None) -> Anchor:
        """Build the anchor from its config mapping (the ``anchor:`` block of a preset or bundle).

        `base_dir` resolves relative file paths (a bundle's folder). The default parses the block
        (without ``kind``) into `Config`; an unknown or mistyped field is a `ConfigError`. An anchor
        kind without a `Config` dataclass overrides this.
        """
        if cls.Config is None:
            raise NotImplementedError(f"anchor kind {cls.kind!r} has no `Config` dataclass: override `from_spec`")
        fields = {k: v for k, v in spec.items() if k != "kind"}
        return cls(from_dict(cls.Config, fields, f"`anchor` ({cls.kind})"), base_dir=base_dir)  # type: ignore[call-arg]

    @classmethod
    def spec_of(cls, config: Any) -> dict[str, Any]:
        """The JSON-ready ``anchor:`` block that rebuilds an anchor of this kind from the dataclass `config`:
        ``{"kind": kind, **fields}`` without the fields that are None (so defaults stay defaults)."""
        if not is_dataclass(config):
            raise TypeError(f"`config`: expected the anchor's Config dataclass, got {type(config).__name__}")
        return {"kind": cls.kind, **{k: v for k, v in asdict(config).items() if v is not None}}

    @abc.abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, D]`` image features (not yet normalized)."""

    @abc.abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Strings -> the token tensors `encode_tokens` takes (CPU)."""

    @abc.abstractmethod
    def encode_tokens(self, tokens: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokens from `tokenize` -> ``[B, D]`` text features (not yet normalized)."""

    def weights_licenses(self) -> list[dict[str, Any]]:
        """The license of each weights file the anchor uses: ``{"file", "license", ...}`` rows, ``[]`` when
        unknown or random init. Anchors whose weights carry a license override this."""
        return []

    def freeze(self) -> Anchor:
        """Put the anchor in eval mode with gradients off; it stays so (`train()` is a no-op)."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> Anchor:
        """Anchors are frozen: always stays in eval mode."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """The device of the anchor's weights."""
        for parameter in self.parameters():
            return parameter.device
        return torch.device("cpu")


@runtime_checkable
class TrainableTowerAnchor(Protocol):
    """An anchor whose image tower trains against its frozen text side (LiT, `anybind.train.lit`).

    Besides the `Anchor` API (`tokenize`, `encode_tokens`, `image_preprocess`, `device`) it has a
    trainable `tower`, the identity of its text side alone, and writes itself into a bundle.
    """

    tower: nn.Module  # the image tower: [B, 3, S, S] normalized pixels -> [B, D] features
    text_identity: AnchorIdentity  # the frozen text side alone (keys cached caption vectors)

    def tower_record(self) -> dict[str, Any]:
        """The tower's architecture as JSON-ready data (run records and precision decisions)."""
        ...

    def trained_anchor(self, logit_scale: float, name: str | None = None
                       ) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        """The ``anchor:`` block of a bundle holding the current tower and `logit_scale`, and the
        weights files it names (bundle-relative path -> tensors to store as safetensors)."""
        ...
