"""Base classes of a modality plugin: `Modality` (loader + preprocessing) and `Encoder` (model).

A plugin module defines::

    @anybind.register_modality("thermal")
    class Thermal(anybind.Modality):
        accepts = "16-bit thermal PNG paths or [H, W] float arrays"
        Preprocess = ThermalPreprocess        # frozen dataclass, values from configs/ or a dict
        default_preprocess = "thermal-default"   # configs/preprocess/thermal/<name>.yaml, or None
        default_encoder = "cnn"
        def load(self, items, **options): ...   # list of user items -> batch tensor(s)

    @anybind.register_encoder("thermal", "cnn")
    class ThermalCNN(anybind.Encoder):
        Config = ThermalCNNConfig              # frozen dataclass of architecture sizes
        def __init__(self, config, context): ...  # build self.backbone and self.head
        def forward(self, batch): ...           # batch -> [B, D] (BoundModel L2-normalizes)
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from anybind.config import load_named
from anybind.errors import ConfigError, InputError, InputFileError

if TYPE_CHECKING:
    from anybind.anchor import Anchor

Batch = torch.Tensor | dict[str, torch.Tensor]


@dataclass(frozen=True)
class NoConfig:
    """The config of an encoder that has no architecture options."""


@dataclass(frozen=True)
class EncoderContext:
    """What an encoder is built against: the frozen anchor and the modality's preprocessing."""

    anchor: Anchor
    preprocess: Any  # the modality's `Preprocess` dataclass instance (or None)

    @property
    def dim(self) -> int:
        """The anchor's embedding width D (the head's output size)."""
        return self.anchor.dim


class Modality(abc.ABC):
    """Turns user inputs of one modality into batches for its encoders.

    Subclasses set the class attributes and implement `load`.

    Batching rule (one for every modality, see `as_items`): a list is a batch of items; a lone
    array or tensor is one item or a batch along its first axis as `array_layout` decides from
    its shape (`item_ndim` dimensions: one item; one more: a batch). Shapes that could be either
    are refused unless the caller says ``batched=True`` / ``batched=False``.
    """

    name: ClassVar[str]
    accepts: ClassVar[str] = "a list of inputs"
    Preprocess: ClassVar[type | None] = None
    default_preprocess: ClassVar[str | None] = None
    default_encoder: ClassVar[str]
    default_batch_size: ClassVar[int] = 32
    default_templates: ClassVar[str] = "image"
    item_ndim: ClassVar[int | None] = None  # dimensions of one array input; one more is a batch
    batch_rule: ClassVar[str] = "pass a list of items"  # how to pass a batch (for ambiguity errors)
    # True when `load` is a pure function of (item content, preprocess config, load options): no
    # random augmentation. The trainer then caches loaded inputs (``data.cache_inputs``) by default.
    deterministic_load: ClassVar[bool] = False

    def __init__(self, preprocess: Any, anchor: Anchor) -> None:
        self.preprocess = preprocess
        self.anchor = anchor

    @classmethod
    def resolve_preprocess(cls, spec: str | Mapping[str, Any] | None, anchor: Anchor) -> Any:
        """The `Preprocess` instance for `spec`: a config name in ``configs/preprocess/<modality>/``,
        a mapping of the fields, or None for `default_preprocess`."""
        if cls.Preprocess is None:
            return None
        spec = cls.default_preprocess if spec is None else spec
        if spec is None:
            raise InputError(f"modality {cls.name!r} needs a `preprocess` config and has no default")
        return load_named(cls.Preprocess, f"preprocess/{cls.name}", spec, f"{cls.name} preprocess")

    def array_layout(self, shape: tuple[int, ...]) -> Literal["item", "batch"] | None:
        """Whether a lone array of `shape` is one item or a batch along its first axis (None: ambiguous).

        Default: `item_ndim` + 1 dimensions is a batch, anything else one item (the loader
        then checks the item's shape). Modalities whose items vary in rank override this.
        """
        if self.item_ndim is not None and len(shape) == self.item_ndim + 1:
            return "batch"
        return "item"

    def as_items(self, inputs: Any, batched: bool | None = None) -> list[Any]:
        """User `inputs` -> a list of items; rejects empties.

        A lone str/Path is one item; a list (or other iterable) is a batch of items. A lone
        array or tensor is split along its first axis when `batched` is True, kept whole when it
        is False, and laid out by `array_layout` when it is None; an ambiguous shape then raises
        `InputError` saying how to pass a batch.
        """
        if batched is not None and not isinstance(batched, bool):
            raise InputError(f"`batched`: expected True, False or None, got {batched!r}")
        is_array = isinstance(inputs, torch.Tensor) or (hasattr(inputs, "__array__") and not isinstance(inputs, Sequence))
        if isinstance(inputs, (str, Path)):
            items: list[Any] = [inputs]
        elif is_array:
            shape = tuple(getattr(inputs, "shape", ()))
            layout = ("batch" if batched else "item") if batched is not None else self.array_layout(shape)
            if layout is None:
                raise InputError(
                    f"`inputs`: a single {describe(inputs)} is ambiguous for modality {self.name!r} "
                    f"({self.batch_rule}); pass `batched=True` to split its first axis into items, "
                    f"`batched=False` to take it as one item, or a list of items")
            if layout == "batch" and not shape:
                raise InputError(f"`batched`: a 0-d {describe(inputs)} has no batch axis to split")
            items = list(inputs) if layout == "batch" else [inputs]
        elif batched is False:
            raise InputError(f"`batched`: False applies to a single array or tensor; a list is always a batch "
                             f"of items (got {type(inputs).__name__})")
        elif isinstance(inputs, Sequence) or hasattr(inputs, "__iter__"):
            items = list(inputs)
        else:
            items = [inputs]
        if not items:
            raise InputError(f"`inputs` for modality {self.name!r}: expected {self.accepts}, got an empty "
                             f"{'batch' if hasattr(inputs, 'ndim') else 'list'}")
        return items

    @abc.abstractmethod
    def load(self, items: Sequence[Any], **options: Any) -> Batch:
        """A chunk of user items -> one batch (tensor or dict of tensors, on CPU) for the encoder."""

    def read_items(self, items: Sequence[Any], options: Mapping[str, Any],
                   read_file: Callable[[Any, str], Any]) -> list[tuple[Any, str]]:
        """For a `load` that takes no `options`: each item as ``(data, argument)``, a file path (str or
        path-like) read by ``read_file(path, argument)``, in-memory data as given; `argument` is the
        item's name in errors (``inputs[i]``). Any option raises `InputError`."""
        if options:
            raise InputError(f"{self.name} inputs take no options, got {', '.join(sorted(options))}")
        pairs = []
        for index, item in enumerate(items):
            argument = f"inputs[{index}]"
            is_file = isinstance(item, str) or hasattr(item, "__fspath__")
            pairs.append((read_file(item, argument) if is_file else item, argument))
        return pairs

    def split_batch(self, batch: Batch, count: int) -> list[Batch]:
        """A batch of `count` items -> one single-item batch per item (what the input cache stores).

        The default takes row i of every tensor, which must all have `count` rows; modalities whose
        batches are not row-per-item (audio windows) override this and `join_batches`.
        """
        tensors = batch.values() if isinstance(batch, Mapping) else [batch]
        if not all(isinstance(t, torch.Tensor) and t.ndim >= 1 and t.shape[0] == count for t in tensors):
            raise InputError(f"modality {self.name!r}: cannot split a batch of {count} item(s) into items: expected "
                             f"a tensor or a dict of tensors with {count} rows, got {describe_batch(batch)}")
        if isinstance(batch, Mapping):
            return [{key: value[i:i + 1] for key, value in batch.items()} for i in range(count)]
        return [batch[i:i + 1] for i in range(count)]

    def join_batches(self, parts: Sequence[Batch]) -> Batch:
        """Single-item (or any) batches from `split_batch` -> one batch, in order (inverse of `split_batch`)."""
        first = parts[0]
        if isinstance(first, Mapping):
            return {key: join_rows([part[key] for part in parts], key) for key in first}  # type: ignore[index]
        return join_rows(parts, "batch")  # type: ignore[arg-type]


class Encoder(nn.Module, abc.ABC):
    """Backbone + head mapping a modality batch to ``[B, D]`` anchor-space features.

    Convention: the trainable projection into the anchor is `self.head`; anything else is the
    backbone. An encoder that needs the frozen anchor (e.g. point clouds through the image tower)
    reaches it as `self.anchor`, which is not part of its state dict.
    """

    modality: ClassVar[str]
    encoder_name: ClassVar[str]
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any, context: EncoderContext) -> None:
        super().__init__()
        self.config = config
        # Kept in a plain object attribute so the anchor's weights stay out of this state dict.
        object.__setattr__(self, "_context", context)

    @property
    def context(self) -> EncoderContext:
        """The anchor and preprocessing this encoder was built against."""
        return self._context  # type: ignore[no-any-return]

    @property
    def anchor(self) -> Anchor:
        """The frozen anchor (not a submodule: its weights are not saved with the encoder)."""
        return self._context.anchor  # type: ignore[no-any-return]

    @abc.abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """A batch from the modality's `load` -> ``[B, D]`` features (not yet normalized)."""

    # The `encoder_args` the `front_end` output depends on (besides the preprocess config), which
    # therefore key the trainer's input cache; None: all of them (the safe default).
    front_end_args: ClassVar[tuple[str, ...] | None] = None

    def front_end(self, batch: Batch) -> Batch:
        """The encoder's fixed, parameter-free input transform (e.g. waveform -> log-mel), run once per item
        by the trainer's input cache; `forward` must accept its output as well as a loaded batch.
        Default: the identity."""
        return batch

    # True when `backbone_features` / `forward_head` split `forward` (frozen-backbone feature caching).
    splits_head: ClassVar[bool] = False

    def backbone_features(self, batch: Batch) -> torch.Tensor:
        """``[B, ...]`` per-item output of everything before the head (one row per item), such that
        ``forward(batch) == forward_head(backbone_features(batch))``. Only when `splits_head`;
        otherwise a `ConfigError` (the trainer then recomputes the backbone every step)."""
        raise self._no_head_split()

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` `backbone_features` -> ``[B, D]`` features (not yet normalized). Only when `splits_head`."""
        raise self._no_head_split()

    def _no_head_split(self) -> ConfigError:
        return ConfigError(f"encoder {type(self).__name__} does not split backbone and head (`splits_head` is "
                           "False), so its backbone features cannot be cached: set `data.cache_features: false` "
                           "or implement `backbone_features` and `forward_head`")

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters of the head (what ``train: head`` optimizes)."""
        head = getattr(self, "head", None)
        return list(head.parameters()) if isinstance(head, nn.Module) else []


class ProjectionHead(nn.Module):
    """Linear projection (optionally a 2-layer MLP) from backbone width to the anchor width D."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim:
            self.proj: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
            )
        else:
            self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim]`` -> ``[B, out_dim]``."""
        return self.proj(features)


def float32_region(device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """Autocast switched off on `device`: signal front ends (mel spectrograms, point-cloud
    projection, disparity scaling) run inside it on float32 inputs, so bf16/fp16 autocast never
    underflows a log floor (1e-10 is 0 in fp16) or quantizes a rendered view."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def describe_batch(batch: Any) -> str:
    """Short description of a batch (tensor, or dict of tensors) for error messages."""
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{key!r}: {describe(value)}" for key, value in batch.items()) + "}"
    return describe(batch)


def join_rows(parts: Sequence[torch.Tensor], what: str) -> torch.Tensor:
    """Concatenate tensors along dim 0; raise `InputError` when their item shapes differ (naming `what`)."""
    shapes = {tuple(part.shape[1:]) for part in parts}
    if len(shapes) > 1:
        raise InputError(f"`{what}`: items have different shapes {sorted(shapes)[:3]}; they cannot be batched "
                         "together (the input cache needs same-shape items: set `data.cache_inputs: false`)")
    return torch.cat(list(parts))


def check_file(item: Any, argument: str, what: str) -> Path:
    """`item` as an existing regular file path; raise `InputFileError` naming `argument` otherwise."""
    if isinstance(item, str) and not item.strip():
        raise InputError(f"`{argument}`: expected {what} path, got an empty string")
    path = Path(item)
    if not path.exists():
        raise InputFileError(f"`{argument}`: {what} file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputFileError(f"`{argument}`: expected {what} file, got a directory: {str(path)!r}")
    return path


def check_finite(tensor: torch.Tensor, argument: str) -> None:
    """Raise `InputError` naming `argument` when `tensor` holds NaN or infinite values."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"`{argument}`: expected finite values, got {bad} NaN/inf value(s)")


def describe(value: Any) -> str:
    """Short description of a value for error messages: type, shape and dtype."""
    if isinstance(value, torch.Tensor) or hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"

