"""The ``text`` modality, served by the anchor's frozen text tower. Accepts non-empty strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from anybind.errors import InputError
from anybind.modality import Batch, Encoder, Modality, NoConfig, describe
from anybind.registry import register_encoder, register_modality


@register_modality("text")
class TextModality(Modality):
    """Captions and queries through the anchor's text tower."""

    accepts = "non-empty strings"
    default_encoder = "anchor"
    default_batch_size = 256
    default_templates = "image"

    def load(self, items: Sequence[Any], **options: Any) -> Batch:
        """Strings -> the anchor's tokens."""
        if options:
            raise InputError(f"text inputs take no options, got {', '.join(sorted(options))}")
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise InputError(f"`inputs[{index}]`: expected a string, got {describe(item)}")
            if not item.strip():
                raise InputError(f"`inputs[{index}]`: expected a non-empty string, got {item!r}")
        return self.anchor.tokenize(list(items))


@register_encoder("text", "anchor")
class AnchorTextEncoder(Encoder):
    """The anchor's frozen text tower (no trainable parameters)."""

    Config = NoConfig

    def forward(self, batch: Batch) -> torch.Tensor:  # noqa: D102
        return self.anchor.encode_tokens(batch)
