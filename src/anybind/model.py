"""`anybind.load` and `BoundModel`: the frozen anchor plus every bound modality, ready to embed.

A model config (a preset in ``configs/presets/``, a YAML/JSON file, or a bundle folder's
``bundle.json``) names the anchor and, per modality, the encoder, its architecture args,
preprocessing, weights and logit scale (the schema and resolving a spec: `anybind.model_config`).
Image and text always come from the anchor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from anybind.anchor import Anchor, AnchorIdentity
from anybind.config import from_dict, to_dict
from anybind.embeddings import Embeddings
from anybind.errors import AnchorMismatchError, CheckpointError, InputError, UnknownNameError
from anybind.modality import Batch, Encoder, EncoderContext, Modality
from anybind.progress import progress_bar
from anybind.registry import get_anchor, get_encoder, get_modality, list_modalities
from anybind.model_config import ANCHOR_MODALITIES as ANCHOR_MODALITIES
from anybind.model_config import BUNDLE_FILE as BUNDLE_FILE
from anybind.model_config import FORMAT_VERSION as FORMAT_VERSION
from anybind.model_config import MODEL_FORMAT as MODEL_FORMAT
from anybind.model_config import BuiltPreset as BuiltPreset
from anybind.model_config import ModalityConfig as ModalityConfig
from anybind.model_config import ModelConfig as ModelConfig
from anybind.model_config import parse_model_config as parse_model_config
from anybind.model_config import resolve_spec as resolve_spec
from anybind.model_config import spec_reference as spec_reference
from anybind.weights import describe_mismatch, read_safetensors, seeded

if TYPE_CHECKING:
    from anybind.index import Index, SearchResult

Precision = Literal["fp32", "bf16", "fp16"]
PROGRESS_MIN_ITEMS = 256  # show a progress bar from this many inputs on (unless told otherwise)


@dataclass
class BoundModality:
    """A modality as used inside a `BoundModel`: loader, encoder, and its settings."""

    modality: Modality
    encoder: Encoder
    config: ModalityConfig


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None, argument: str = "device") -> torch.device:
    """`device` as a usable `torch.device` (None: `default_device()`); `InputError` naming `argument`
    for a malformed string or a device this machine does not have (e.g. ``cuda:7`` without CUDA)."""
    if device is None:
        return default_device()
    if not isinstance(device, (str, torch.device)):
        raise InputError(f"`{argument}`: expected a device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"`{argument}`: expected a device such as 'cpu', 'cuda' or 'cuda:1', got {device!r} "
                         f"({str(error).splitlines()[0]})") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"`{argument}`: {device!r} asks for CUDA, but CUDA is not available on this machine; "
                             "use 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"`{argument}`: {device!r} asks for CUDA device {resolved.index}, but this machine has "
                             f"{count} (cuda:0 to cuda:{count - 1})")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"`{argument}`: {device!r} asks for Apple MPS, which is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps", "meta") and not hasattr(torch, resolved.type):
        raise InputError(f"`{argument}`: device type {resolved.type!r} is not available on this machine")
    return resolved


def load_encoder_weights(encoder: nn.Module, path: Path, argument: str) -> None:
    """Load a safetensors state dict strictly into `encoder`, naming missing/unexpected keys."""
    state = read_safetensors(path, argument)
    mismatch = describe_mismatch(encoder.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"`{argument}`: {str(path)!r} does not match the encoder {type(encoder).__name__}: "
                              f"{mismatch}")
    encoder.load_state_dict(state, strict=True)


def build_modality(name: str, entry: ModalityConfig | Mapping[str, Any], anchor: Anchor,
                   base_dir: Path | None = None) -> BoundModality:
    """Build one modality (loader + encoder, weights loaded if given) against `anchor`."""
    if not isinstance(entry, ModalityConfig):
        entry = from_dict(ModalityConfig, entry or {}, f"`modalities.{name}`")
    modality_cls = get_modality(name)
    encoder_name = entry.encoder or modality_cls.default_encoder
    encoder_cls = get_encoder(name, encoder_name)
    preprocess = modality_cls.resolve_preprocess(entry.preprocess, anchor)
    encoder_config = from_dict(encoder_cls.Config, entry.encoder_args, f"`modalities.{name}.encoder_args`")
    with seeded(entry.seed):
        encoder = encoder_cls(encoder_config, EncoderContext(anchor=anchor, preprocess=preprocess))
    if entry.weights:
        weights = Path(entry.weights)
        if base_dir is not None and not weights.is_absolute():
            weights = base_dir / weights
        load_encoder_weights(encoder, weights, f"modalities.{name}.weights")
    encoder.eval()
    return BoundModality(modality=modality_cls(preprocess, anchor), encoder=encoder, config=entry)


def load(spec: str | Path | Mapping[str, Any] = "tiny", device: str | torch.device | None = None,
         precision: Precision = "fp32", *, rebuild: bool = False) -> BoundModel:
    """Load a model: a preset name (``"tiny"``), a config file, a bundle folder, or a mapping.

    `device` defaults to CUDA when available, else CPU. `precision` ``"bf16"``/``"fp16"``
    runs encoders under autocast (embeddings are always returned as float32). `rebuild`
    re-trains a built preset (such as ``default``) instead of using its cache.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"`precision`: expected 'fp32', 'bf16' or 'fp16', got {precision!r}")
    target = resolve_device(device)
    config, base_dir = resolve_spec(spec, rebuild=rebuild)
    anchor = get_anchor(config.anchor["kind"]).from_spec(config.anchor, base_dir=base_dir)
    recorded = config.info.get("anchor_identity")
    if isinstance(recorded, Mapping) and recorded.get("weights_sha256") not in (None, anchor.identity.weights_sha256):
        raise AnchorMismatchError(
            f"`spec`: the bundle's modalities were trained against anchor {AnchorIdentity.from_dict(recorded).key}, "
            f"but its anchor spec now builds {anchor.identity.key} (were the anchor weights replaced?)")
    model = BoundModel(anchor, config, base_dir=base_dir, precision=precision)
    model.spec = spec_reference(spec)
    return model.to(target)


class BoundModel(nn.Module):
    """The frozen anchor and the modalities bound to it. Use `anybind.load` to make one.

    `embed` turns inputs of any modality into unit-norm float32 vectors of the anchor space.
    """

    spec: str | None = None  # what `anybind.load` was given (see `spec_reference`), recorded by indexes

    def __init__(self, anchor: Anchor, config: ModelConfig, base_dir: Path | None = None,
                 precision: Precision = "fp32") -> None:
        super().__init__()
        self.anchor = anchor
        self.config = config
        self.precision: Precision = precision
        self._bound: dict[str, BoundModality] = {}
        self.encoders = nn.ModuleDict()
        for name in ANCHOR_MODALITIES:
            self.add_modality(name, ModalityConfig())
        for name, entry in config.modalities.items():
            self.add_modality(name, from_dict(ModalityConfig, entry or {}, f"`modalities.{name}`"), base_dir)

    def add_modality(self, name: str, entry: ModalityConfig, base_dir: Path | None = None) -> None:
        """Build and attach modality `name` (replacing one of the same name)."""
        bound = build_modality(name, entry, self.anchor, base_dir)
        bound.encoder.to(self.device)
        self._bound[name] = bound
        self.encoders[name] = bound.encoder

    @property
    def device(self) -> torch.device:
        """Where the anchor (and every encoder) lives."""
        return self.anchor.device

    @property
    def anchor_key(self) -> str:
        """The anchor identity key carried by every `Embeddings` this model returns."""
        return self.anchor.identity.key

    @property
    def dim(self) -> int:
        """The anchor's embedding width D."""
        return self.anchor.dim

    @property
    def modalities(self) -> list[str]:
        """Names of the modalities this model can embed."""
        return sorted(self._bound)

    def bound(self, modality: str) -> BoundModality:
        """The loader, encoder and settings of `modality`; raises naming what this model has."""
        if not isinstance(modality, str):
            raise InputError(f"`modality`: expected a modality name (str), got {type(modality).__name__}")
        if modality in self._bound:
            return self._bound[modality]
        registered = list_modalities()
        if modality in registered:
            raise UnknownNameError(
                f"modality {modality!r} is registered but not part of this model (it has "
                f"{', '.join(self.modalities)}); bind it with `anybind train` or load a preset that includes it")
        get_modality(modality)  # raises with close matches and the registered list
        raise AssertionError("unreachable")

    def encoder(self, modality: str) -> Encoder:
        """The encoder of `modality`."""
        return self.bound(modality).encoder

    def logit_scale(self, modality: str) -> float:
        """The logit scale (1/temperature) for `modality` vs anchor text: configured, else the anchor's.

        It is data for zero-shot softmax and never multiplied into embeddings.
        """
        value = self.bound(modality).config.logit_scale
        return float(value) if value is not None else float(self.anchor.logit_scale)

    def weights_licenses(self) -> list[dict[str, Any]]:
        """The license of each weights file this model uses: the anchor's (e.g. ImageBind: CC BY-NC-SA
        4.0), then each trained encoder's file, whose terms follow the anchor it was trained against."""
        rows = list(self.anchor.weights_licenses())
        for name, bound in sorted(self._bound.items()):
            if bound.config.weights:
                rows.append(self.trained_weights_license(bound.config.weights, name))
        return rows

    def trained_weights_license(self, file: str, modality: str) -> dict[str, Any]:
        """The license row of an encoder weights file trained against this model's anchor."""
        derived = sorted({str(row["license"]) for row in self.anchor.weights_licenses()})
        return {"file": file, "modality": modality, "license": "set by its author (anybind records none)",
                "trained_against": derived or ["no licensed anchor weights"]}

    def temperature(self, modality: str) -> float:
        """The softmax temperature of `modality` (``1 / logit_scale``)."""
        return 1.0 / self.logit_scale(modality)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def embed(self, modality: str | Mapping[str, Any], inputs: Any = None, *, batch_size: int | None = None,
              progress: bool | None = None, batched: bool | None = None,
              **options: Any) -> Embeddings | dict[str, Embeddings]:
        """Embed `inputs` of `modality` -> ``[N, D]`` float32 unit-norm `Embeddings` on CPU.

        ``embed({"image": [...], "text": [...]})`` embeds several modalities and returns a dict.
        `batch_size` defaults to the modality's; `progress` shows a tqdm bar (default: from
        256 inputs on); `batched` says whether a single array is a batch along its first axis
        (default: the modality's rule, see `Modality.as_items`); extra `options` go to the
        modality's loader (e.g. ``sample_rate=``).
        """
        if isinstance(modality, Mapping):
            if inputs is not None:
                raise InputError("`inputs`: pass inputs inside the dict when `modality` is a dict")
            if not modality:
                raise InputError("`modality`: expected a non-empty dict of modality -> inputs, got {}")
            return {name: self.embed(name, value, batch_size=batch_size, progress=progress,  # type: ignore[misc]
                                     batched=batched, **options)
                    for name, value in modality.items()}
        bound = self.bound(modality)
        if inputs is None:
            raise InputError(f"`inputs`: expected {bound.modality.accepts}, got None")
        items = bound.modality.as_items(inputs, batched=batched)
        size = batch_size if batch_size is not None else bound.modality.default_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"`batch_size`: expected a positive integer, got {size!r}")
        show = progress if progress is not None else len(items) >= PROGRESS_MIN_ITEMS
        chunks = []
        with progress_bar(total=len(items), desc=f"embed {modality}", unit="item", disable=not show) as bar, \
                torch.inference_mode():
            for start in range(0, len(items), size):
                batch = bound.modality.load(items[start:start + size], **options)  # CPU loaders: float32
                with self._autocast():
                    features = bound.encoder(to_device(batch, self.device)).float()
                chunks.append(F.normalize(features, dim=-1).cpu())
                bar.update(min(size, len(items) - start))
        vectors = torch.cat(chunks).clone()
        if not bool(torch.isfinite(vectors).all()):
            raise InputError(f"`inputs`: the {modality} encoder produced non-finite vectors (check the inputs)")
        return Embeddings.wrap(vectors, self.anchor_key)

    def zero_shot(self, modality: str, inputs: Any, class_names: list[str] | str,
                  templates: list[str] | str | None = None, **options: Any) -> torch.Tensor:
        """Zero-shot class probabilities ``[N, C]`` of `inputs` over `class_names` (see `anybind.zero_shot`)."""
        from anybind.zero_shot import zero_shot

        return zero_shot(self, modality, inputs, class_names, templates=templates, **options)

    def search(self, query: Any, query_modality: str, index: Index, k: int = 10,
               modality: str | list[str] | None = None, **options: Any) -> SearchResult:
        """Embed `query` as `query_modality` and search `index` (any-to-any) for the top `k`."""
        vectors = self.embed(query_modality, query, **options)
        return index.search(vectors, k=k, modality=modality)

    def to_config(self) -> dict[str, Any]:
        """The JSON-ready model config that rebuilds this model (weights paths as configured)."""
        return to_dict(self.config)

    def __repr__(self) -> str:
        return f"BoundModel(anchor={self.anchor_key!r}, modalities={self.modalities}, device={self.device})"


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move a batch (a tensor, or a dict/list/tuple of tensors) to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}  # type: ignore[misc]
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)  # type: ignore[return-value]
    return batch


