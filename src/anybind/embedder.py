"""`Embedder`: what the index and zero-shot need from a model, as a protocol in a leaf module.

`anybind.model.BoundModel` satisfies it; `anybind.index` and `anybind.zero_shot` depend on this
protocol, not on `anybind.model`, so the three modules form no import (or type) cycle.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from anybind.anchor import Anchor
from anybind.embeddings import Embeddings
from anybind.modality import Modality


class ModalitySettings(Protocol):
    """The per-modality settings an `Embedder` exposes (`ModalityConfig` in `anybind.model`)."""

    templates: str | None  # prompt-template set name for zero-shot (None: the modality's default)


class BoundModalityView(Protocol):
    """A bound modality as seen through an `Embedder`: its loader object and its settings."""

    modality: Modality
    config: ModalitySettings


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds inputs of named modalities into one anchor space."""

    anchor: Anchor

    @property
    def anchor_key(self) -> str:
        """The anchor identity key carried by every `Embeddings` it returns."""
        ...

    @property
    def dim(self) -> int:
        """The anchor's embedding width D."""
        ...

    def bound(self, modality: str) -> BoundModalityView:
        """The loader and settings of `modality`; raises `UnknownNameError` when absent."""
        ...

    def embed(self, modality: Any, inputs: Any = None, *, batch_size: int | None = None,
              progress: bool | None = None, **options: Any) -> Embeddings | dict[str, Embeddings]:
        """``[N, D]`` float32 unit-norm vectors of `inputs` (a dict of modalities gives a dict)."""
        ...

    def logit_scale(self, modality: str) -> float:
        """The zero-shot logit scale (1/temperature) of `modality` against anchor text."""
        ...
