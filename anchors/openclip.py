"""The ``openclip`` anchor: frozen image and text towers of any open_clip model.

Weights come from (a) a pretrained tag through open_clip's own cache/download, (b) a local
checkpoint file, (c) an open_clip ``local-dir:`` folder (with its ``open_clip_config.json``
preprocessing), or (d) seeded random init (tests, the ``tiny`` preset).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from anybind.anchor import Anchor, AnchorIdentity, ImagePreprocess, sha256_file, sha256_state_dict
from anybind.errors import CheckpointError, ConfigError, InputFileError, UnknownNameError, unknown_name_message
from anybind.registry import register_anchor
from anybind.weights import seeded

LOCAL_DIR = "local-dir:"


@dataclass(frozen=True)
class OpenCLIPAnchorConfig:
    """The ``anchor:`` block of a preset or bundle for ``kind: openclip``."""

    model: str  # open_clip config name ("ViT-B-32"), or "local-dir:/folder"
    pretrained: str | None = None  # open_clip tag, checkpoint file path, or None: seeded random init
    model_cfg: dict | None = None  # overrides of the named config: embed_dim, vision_cfg, text_cfg, ...
    name: str | None = None  # short config name used in the identity (default: `model`)
    seed: int = 0  # random-init seed (only used when there are no weights)
    quickgelu: Literal["error", "warn"] = "error"  # a tag trained with QuickGELU on a config without it
    cache_dir: str | None = None  # open_clip download cache (default: open_clip's own)


class _DropRandomInitNotice(logging.Filter):
    """Drops open_clip's root-logger warning about random init: for us it is a deliberate choice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _seeded(seed: int) -> Any:
    """Run a block with torch's CPU RNG seeded and open_clip's random-init notice silenced."""
    notice_filter = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice_filter)
    try:
        with seeded(seed):
            yield
    finally:
        logging.getLogger().removeFilter(notice_filter)


def _check_quickgelu(config: OpenCLIPAnchorConfig) -> None:
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(config.model, config.pretrained or "")
    if not tag_cfg:
        return
    model_cfg = dict(open_clip.get_model_config(config.model) or {})
    model_cfg.update(config.model_cfg or {})
    tag_quick, model_quick = bool(tag_cfg.get("quick_gelu", False)), bool(model_cfg.get("quick_gelu", False))
    if tag_quick == model_quick:
        return
    fix = (f"use model {config.model + '-quickgelu'!r}" if tag_quick and not config.model.endswith("-quickgelu")
           else "set model_cfg.quick_gelu to match")
    message = (f"`anchor.pretrained` tag {config.pretrained!r} was trained with quick_gelu={tag_quick} but "
               f"`anchor.model` {config.model!r} has quick_gelu={model_quick}: embeddings would be silently "
               f"degraded; {fix} (or set `anchor.quickgelu: warn` to proceed)")
    if config.quickgelu == "error":
        raise ConfigError(message)
    warnings.warn(message, UserWarning, stacklevel=3)


@register_anchor("openclip")
class OpenCLIPAnchor(Anchor):
    """Frozen open_clip model used as the anchor space (see module docstring for weight sources)."""

    Config = OpenCLIPAnchorConfig

    def __init__(self, config: OpenCLIPAnchorConfig, base_dir: Path | None = None) -> None:
        super().__init__()
        import open_clip

        self.config = config
        model_name, pretrained = config.model, config.pretrained
        overrides = dict(config.model_cfg or {})
        weights_path: Path | None = None
        tag: str | None = None
        if model_name.startswith(LOCAL_DIR):
            folder = Path(model_name[len(LOCAL_DIR):]).expanduser()
            if base_dir is not None and not folder.is_absolute():
                folder = base_dir / folder
            if not (folder / "open_clip_config.json").is_file():
                raise InputFileError(f"`anchor.model`: {LOCAL_DIR} folder {str(folder)!r} has no open_clip_config.json")
            model_name = LOCAL_DIR + str(folder)
            with _seeded(config.seed):
                model = open_clip.create_model(model_name, **overrides)
            found = open_clip.factory._find_checkpoint_in_dir(folder)
            weights_path = Path(found) if found else None
            tag = f"{LOCAL_DIR}{folder.name}"
        else:
            if open_clip.get_model_config(model_name) is None:
                raise UnknownNameError(unknown_name_message(
                    "open_clip model config", model_name, open_clip.list_models(),
                    "Pass `anchor.model_cfg` for a custom architecture, or a 'local-dir:' folder."))
            file = None
            if pretrained:
                candidate = Path(pretrained).expanduser()
                if base_dir is not None and not candidate.is_absolute() and (base_dir / candidate).is_file():
                    candidate = base_dir / candidate
                if candidate.is_file():
                    file = candidate
                elif open_clip.get_pretrained_cfg(model_name, pretrained):
                    _check_quickgelu(config)
                elif any(sep in pretrained for sep in "/\\") or candidate.suffix:
                    raise InputFileError(f"`anchor.pretrained`: checkpoint file {pretrained!r} does not exist")
                else:
                    raise UnknownNameError(unknown_name_message(
                        f"open_clip pretrained tag for {model_name}", pretrained,
                        open_clip.list_pretrained_tags_by_model(model_name)))
            with _seeded(config.seed):
                if pretrained and file is None:
                    try:
                        model = open_clip.create_model(model_name, pretrained=pretrained,
                                                       cache_dir=config.cache_dir, **overrides)
                    except RuntimeError as error:
                        raise InputFileError(
                            f"`anchor.pretrained`: weights for tag {pretrained!r} of {model_name} are not in the "
                            f"open_clip cache and could not be downloaded ({error})") from None
                    weights_path = Path(open_clip.download_pretrained(
                        open_clip.get_pretrained_cfg(model_name, pretrained), cache_dir=config.cache_dir))
                    tag = pretrained
                else:
                    model = open_clip.create_model(model_name, **overrides)
            if file is not None:
                _load_checkpoint(model, file)
                weights_path, tag = file, file.name
        self.model = model
        self.freeze()
        preprocess = dict(model.visual.preprocess_cfg)
        size = preprocess["size"]
        self.image_preprocess = ImagePreprocess(
            size=int(size if isinstance(size, int) else size[0]),
            mean=tuple(float(v) for v in preprocess["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in preprocess["std"]),  # type: ignore[arg-type]
            interpolation=str(preprocess.get("interpolation", "bicubic")),
            resize_mode=str(preprocess.get("resize_mode", "shortest")),
        )
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.dim = int(model.text_projection.shape[1] if isinstance(getattr(model, "text_projection", None), torch.Tensor)
                       else model.encode_text(self._tokenizer(["x"])).shape[-1])
        self.logit_scale = float(model.logit_scale.exp().item())
        sha = sha256_file(weights_path) if weights_path else sha256_state_dict(model.state_dict())
        name = config.name or (model_name if not overrides else
                               f"{model_name}+{hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]}")
        self.identity = AnchorIdentity(kind="openclip", config=name, tag=tag, weights_sha256=sha)
        self.spec = self.spec_of(config)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, D]`` open_clip image features."""
        return self.model.encode_image(pixels)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Strings -> ``[B, context_length]`` token ids with open_clip's tokenizer (BPE, offline)."""
        return self._tokenizer(texts)

    def encode_tokens(self, tokens: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, L]`` token ids -> ``[B, D]`` open_clip text features."""
        return self.model.encode_text(tokens)


# One entry of torch's load_state_dict RuntimeError (torch/nn/modules/module.py wording).
_TORCH_SIZE_MISMATCH = re.compile(r"size mismatch for (?P<key>\S+): copying a param with shape "
                                  r"torch\.Size\(\[(?P<given>[^\]]*)\]\) from checkpoint, the shape in current "
                                  r"model is torch\.Size\(\[(?P<model>[^\]]*)\]\)")


def _size(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(",") if n.strip())


def _load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load an open_clip checkpoint file strictly, naming missing/unexpected keys on mismatch."""
    import open_clip

    from anybind.weights import explain_torch_load_error, format_mismatch, shape_mismatch

    try:
        result = open_clip.load_checkpoint(model, str(path), strict=False, weights_only=True)
    except RuntimeError as error:
        text = str(error)
        if "size mismatch" in text:  # torch stops at shapes before reporting keys: only the shapes are known
            shapes = [shape_mismatch(m["key"], _size(m["given"]), _size(m["model"]))
                      for m in _TORCH_SIZE_MISMATCH.finditer(text)]
            raise CheckpointError(f"checkpoint {str(path)!r} does not match the anchor config: "
                                  f"{format_mismatch([], [], shapes or [text.strip()])}") from None
        raise CheckpointError(f"checkpoint {str(path)!r} could not be loaded: "
                              f"{explain_torch_load_error(error)}") from None
    except Exception as error:  # unpickling refused, corrupt zip, ...
        raise CheckpointError(f"checkpoint {str(path)!r} could not be read: {explain_torch_load_error(error)}") from None
    mismatch = format_mismatch(result.missing_keys, result.unexpected_keys)
    if mismatch:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the anchor config: {mismatch}")
