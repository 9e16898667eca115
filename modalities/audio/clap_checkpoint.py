"""Official LAION-CLAP checkpoints: read, detect the architecture from the tensors, load, convert.

The official files (``630k-best.pt``, ``630k-audioset-best.pt``, ``*-fusion-best.pt``, the
HTSAT-base ``music_*.pt``) hold ``{"state_dict": {"module.audio_branch...": ...,
"module.audio_projection...": ..., "module.text_branch...": ...}, ...}``. They are read with
``torch.load(weights_only=True)``; ``module.`` is stripped and only the audio keys are kept.
The HTS-AT size (tiny/base/large) and the fusion type are read from the tensors themselves.
`convert_clap_checkpoint` writes an audio-only safetensors file plus a small JSON describing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from anybind.anchor import sha256_file
from anybind.atomic import atomic_write_bytes
from anybind.errors import CheckpointError, InputFileError
from anybind.weights import describe_mismatch

if TYPE_CHECKING:
    from anybind.modalities.audio.htsat import HTSATArchitecture

AUDIO_PREFIXES = ("audio_branch.", "audio_projection.")
KNOWN_SIZES = ("tiny", "base", "large")
CONVERTED_WEIGHTS = "clap-audio.safetensors"
CONVERTED_INFO = "clap-audio.json"
CONVERTED_FORMAT = "anybind.clap-audio"
ARGUMENT = "encoder_args.clap_checkpoint"


@dataclass(frozen=True)
class ClapAudioLayout:
    """What a CLAP audio state dict is, read from its tensor names and shapes."""

    size: str  # "tiny", "base" or "large" (matched against configs/encoders/audio/htsat-*.yaml)
    embed_dim: int  # width of the first Swin stage
    depths: tuple[int, ...]  # Swin blocks per stage
    num_heads: tuple[int, ...]  # attention heads per stage
    clap_dim: int  # output width of audio_projection
    fusion: str | None  # CLAP fusion type, None for non-fusion checkpoints

    def describe(self) -> str:
        """Short human description, e.g. ``HTSAT-tiny (embed_dim 96, depths (2, 2, 6, 2)), no fusion``."""
        return (f"HTSAT-{self.size} (embed_dim {self.embed_dim}, depths {self.depths}, heads {self.num_heads}, "
                f"clap_dim {self.clap_dim}), {'fusion ' + repr(self.fusion) if self.fusion else 'no fusion'}")


def _describe_architecture(architecture: HTSATArchitecture, fusion: str | None) -> str:
    return (f"htsat-{architecture.name} (embed_dim {architecture.embed_dim}, depths {tuple(architecture.depths)}, "
            f"heads {tuple(architecture.num_heads)}, clap_dim {architecture.clap_dim}), "
            f"{'fusion ' + repr(fusion) if fusion else 'no fusion'}")


def strip_to_audio_keys(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A CLAP state dict -> its ``audio_branch.*``/``audio_projection.*`` tensors, ``module.`` stripped."""
    out = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name.startswith(AUDIO_PREFIXES) and isinstance(value, torch.Tensor):
            out[name] = value
    return out


def detect_layout(state: Mapping[str, torch.Tensor], source: str) -> ClapAudioLayout:
    """Read size, depths, heads, projection width and fusion type from an audio state dict."""
    from anybind.modalities.audio.htsat import load_architecture

    proj = state.get("audio_branch.patch_embed.proj.weight")
    if proj is None:
        raise CheckpointError(f"{source}: not an HTSAT audio branch (no `audio_branch.patch_embed.proj.weight`; "
                              "PANN CLAP checkpoints are not supported)")
    blocks: dict[int, int] = {}
    heads: dict[int, int] = {}
    for key, value in state.items():
        match = re.match(r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.", key)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
            if key.endswith("attn.relative_position_bias_table"):
                heads[stage] = int(value.shape[1])
    depths = tuple(blocks[i] for i in sorted(blocks))
    num_heads = tuple(heads.get(i, 0) for i in sorted(blocks))
    embed_dim = int(proj.shape[0])
    projection = state.get("audio_projection.2.weight")
    clap_dim = int(projection.shape[0]) if projection is not None else 0
    fusion = _detect_fusion(state, int(proj.shape[1]))
    size = None
    for name in KNOWN_SIZES:
        architecture = load_architecture(f"htsat-{name}")
        if architecture.embed_dim == embed_dim and tuple(architecture.depths) == depths:
            size = name
    if size is None:
        raise CheckpointError(f"{source}: HTSAT with embed_dim {embed_dim} and depths {depths} matches none of "
                              f"the known sizes {', '.join('htsat-' + s for s in KNOWN_SIZES)}")
    return ClapAudioLayout(size=size, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                           clap_dim=clap_dim, fusion=fusion)


def _detect_fusion(state: Mapping[str, torch.Tensor], in_channels: int) -> str | None:
    if in_channels == 4:
        return "channel_map"
    for kind, marker, fusion_prefix in (("2d", "audio_branch.patch_embed.mel_conv2d.weight",
                                         "audio_branch.patch_embed.fusion_model."),
                                        ("1d", "audio_branch.mel_conv1d.0.weight", "audio_branch.fusion_model.")):
        if marker in state:
            names = [k for k in state if k.startswith(fusion_prefix)]
            if any(".local_att2." in k for k in names):
                return f"iaff_{kind}"
            if any(".local_att." in k for k in names):
                return f"aff_{kind}"
            return f"daf_{kind}"
    return None


def read_clap_audio_state(path: str | Path, argument: str = ARGUMENT) -> tuple[dict[str, torch.Tensor], ClapAudioLayout]:
    """Read an official CLAP ``.pt`` (or a converted ``.safetensors``) -> (audio state dict, its layout)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputFileError(f"`{argument}`: CLAP checkpoint {str(file)!r} does not exist")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(file))
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"`{argument}`: {str(file)!r} is not a readable safetensors file ({error})") from None
    else:
        try:
            from anybind.weights import explain_torch_load_error

            raw = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling refused, corrupt zip, not a torch file
            raise CheckpointError(f"`{argument}`: {str(file)!r} could not be read as a torch checkpoint with weights_only=True: "
                                  f"{explain_torch_load_error(error)}") from None
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"`{argument}`: {str(file)!r} holds a {type(raw).__name__}, expected a state dict "
                              "or {'state_dict': ...}")
    state = strip_to_audio_keys(raw)
    if not state:
        sample = ", ".join(list(map(str, raw))[:5])
        raise CheckpointError(f"`{argument}`: {str(file)!r} has no `audio_branch.`/`audio_projection.` tensors; "
                              f"is it a LAION-CLAP checkpoint? (first keys: {sample or 'none'})")
    return state, detect_layout(state, f"`{argument}` {str(file)!r}")


def check_architecture(layout: ClapAudioLayout, architecture: HTSATArchitecture, fusion: str | None,
                       source: str | Path) -> None:
    """Raise `CheckpointError` naming the mismatch when a checkpoint's layout is not `architecture`/`fusion`."""
    same = (layout.embed_dim == architecture.embed_dim and layout.depths == tuple(architecture.depths)
            and layout.num_heads == tuple(architecture.num_heads) and layout.clap_dim == architecture.clap_dim)
    if not same or layout.fusion != fusion:
        raise CheckpointError(f"`{ARGUMENT}`: {str(source)!r} holds {layout.describe()} but the encoder is "
                              f"{_describe_architecture(architecture, fusion)}; set `encoder_args.architecture: "
                              f"htsat-{layout.size}` and `fusion: {layout.fusion}` or leave them unset to detect")


def load_clap_audio_state(encoder: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load CLAP audio tensors strictly into `encoder`'s ``audio_branch``/``audio_projection``.

    Raises `CheckpointError` naming missing keys, unexpected keys and shape mismatches.
    """
    expected = {k: v for k, v in encoder.state_dict().items() if k.startswith(AUDIO_PREFIXES)}
    mismatch = describe_mismatch(expected, state)
    if mismatch:
        raise CheckpointError(f"`{ARGUMENT}`: {str(source)!r} does not match the htsat encoder: {mismatch}")
    result = encoder.load_state_dict(dict(state), strict=False)
    leftover = [k for k in result.missing_keys if k.startswith(AUDIO_PREFIXES)]
    if leftover or result.unexpected_keys:
        raise CheckpointError(f"`{ARGUMENT}`: {str(source)!r} left keys unloaded: {leftover[:8]}")


def convert_clap_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Convert an official CLAP checkpoint into an audio-only bundle folder and describe it.

    Writes ``<out_dir>/clap-audio.safetensors`` (the ``audio_branch.*`` and
    ``audio_projection.*`` tensors) and ``<out_dir>/clap-audio.json`` (architecture, fusion,
    preprocess config name, the ``modalities.audio`` entry that uses it, source sha256).
    Returns the JSON content.
    """
    from safetensors.torch import save

    state, layout = read_clap_audio_state(checkpoint, "checkpoint")
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputFileError(f"`out_dir`: {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / CONVERTED_WEIGHTS
    info: dict[str, Any] = {
        "format": CONVERTED_FORMAT,
        "version": 1,
        "layout": asdict(layout),
        "source": Path(checkpoint).name,
        "source_sha256": sha256_file(checkpoint),
        "tensors": len(state),
        "modality_entry": {
            "encoder": "htsat",
            "encoder_args": {"architecture": f"htsat-{layout.size}", "fusion": layout.fusion,
                             "clap_checkpoint": str(weights.resolve())},
            "preprocess": "clap-48k-fusion" if layout.fusion else "clap-48k",
        },
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    metadata = {"format": CONVERTED_FORMAT, "layout": json.dumps(asdict(layout)), "source": info["source"]}
    atomic_write_bytes(weights, save(tensors, metadata=metadata))
    text = json.dumps(info, indent=2)
    atomic_write_bytes(folder / CONVERTED_INFO, (text + "\n").encode())
    return json.loads(text)  # JSON-ready: tuples as lists
