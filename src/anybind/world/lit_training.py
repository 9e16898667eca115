"""Training a `lit` anchor: a CNN image tower fitted to a frozen sentence encoder on image-caption pairs.

LiT (Zhai et al. 2022) with the text side locked: captions are embedded once by the frozen
text model, then only the image tower and a logit scale are trained with the symmetric CLIP
InfoNCE loss (open_clip's `ClipLoss`), AdamW, linear warmup and cosine decay. Everything is
seeded; the result is written as a bundle folder that ``anybind.load(folder)`` reads.

    result = train_lit(world.images[train], world.captions[train], LiTTrainConfig(epochs=10),
                       val_images=..., val_captions=...)
    save_lit_bundle(result, "bundles/lit-world")
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from anybind.anchors.lit import (
    CLIP_INIT_LOGIT_SCALE,
    MINILM_PACKAGE,
    ConvImageTower,
    LiTAnchor,
    LiTAnchorConfig,
    lit_spec,
    tower_config_dict,
    tower_weights_tensors,
)
from anybind.errors import InputError

CLIP_MAX_LOGIT_SCALE = 100.0  # CLIP (Radford et al. 2021): logit scale clipped at 100
TOWER_FILE = "anchor/image-tower.safetensors"


@dataclass(frozen=True)
class LiTTrainConfig:
    """Settings of `train_lit`."""

    tower: str | dict = "cnn64"  # tower config name in configs/anchors/lit/, or its fields
    text_model: str = MINILM_PACKAGE  # frozen text encoder (package name or folder)
    epochs: float = 12.0  # passes over the training images
    batch_size: int = 128  # images per contrastive batch (one random caption each)
    lr: float = 2.0e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW decay of conv/linear weights (not norms, biases, scale)
    warmup_steps: int = 30  # linear warmup steps
    shift_pixels: int = 4  # random translation augmentation, pixels (0: off)
    flip: bool = True  # random horizontal flips
    seed: int = 0  # seeds init, batches and augmentation
    eval_every_epochs: int = 0  # 0: evaluate on the val set only at the end


@dataclass
class LiTResult:
    """What `train_lit` returns: the trained tower, its logit scale and the measurements."""

    tower: ConvImageTower
    logit_scale: float
    config: LiTTrainConfig
    tower_config: dict  # the tower's config fields (frozen into the bundle)
    history: list[dict] = field(default_factory=list)  # per-epoch {"epoch", "loss", "seconds", ...}
    metrics: dict = field(default_factory=dict)  # final val metrics (see `evaluate_lit`)
    seconds: float = 0.0  # training wall time (without caption embedding)


def _check_images(images: np.ndarray | torch.Tensor, argument: str) -> torch.Tensor:
    """`images` as a uint8 ``[N, H, W, 3]`` tensor; raise `InputError` naming `argument` otherwise."""
    array = torch.as_tensor(np.asarray(images))
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != torch.uint8:
        raise InputError(f"`{argument}`: expected uint8 [N, H, W, 3], got {array.dtype} {tuple(array.shape)}")
    return array


def _pixels(images: torch.Tensor, anchor: LiTAnchor) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalized float ``[N, 3, S, S]`` exactly as the image modality does."""
    from anybind.modalities.image import tensor_transform

    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    return torch.cat([tensor_transform(chunk, anchor.image_preprocess) for chunk in pixels.split(512)])


def embed_texts(anchor: LiTAnchor, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm text vectors of `texts` from the anchor's frozen text model."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = anchor.tokenize(list(texts[start:start + batch_size]))
            chunks.append(F.normalize(anchor.encode_tokens(tokens).float(), dim=-1))
    return torch.cat(chunks)


def _caption_index(captions: Sequence[Sequence[str] | str]) -> tuple[list[str], list[np.ndarray]]:
    """The unique captions and, per image, the indices of its captions into them (validated)."""
    unique: dict[str, int] = {}
    per_image = []
    for index, options in enumerate(captions):
        if isinstance(options, str):
            options = [options]
        if not options or not all(isinstance(t, str) and t.strip() for t in options):
            raise InputError(f"`captions[{index}]`: expected a non-empty string or list of strings, got {options!r}")
        per_image.append(np.array([unique.setdefault(t, len(unique)) for t in options]))
    return list(unique), per_image


def _augment(pixels: torch.Tensor, config: LiTTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and integer translations (edge-replicated) of ``[B, 3, S, S]``."""
    if config.flip:
        flip = torch.rand(len(pixels), generator=generator) < 0.5
        pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
    shift = config.shift_pixels
    if shift:
        size = pixels.shape[-1]
        padded = F.pad(pixels, (shift, shift, shift, shift), mode="replicate")
        dx = torch.randint(0, 2 * shift + 1, (len(pixels),), generator=generator)
        dy = torch.randint(0, 2 * shift + 1, (len(pixels),), generator=generator)
        rows = (dy[:, None] + torch.arange(size))[:, None, :, None].expand(-1, 3, -1, size + 2 * shift)
        padded = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(size))[:, None, None, :].expand(-1, 3, size, -1)
        pixels = padded.gather(3, cols)
    return pixels


def _optimizer(tower: torch.nn.Module, log_scale: torch.nn.Parameter, config: LiTTrainConfig) -> torch.optim.AdamW:
    decay = [p for p in tower.parameters() if p.ndim >= 2]
    rest = [p for p in tower.parameters() if p.ndim < 2] + [log_scale]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.lr)


def encode_images(tower: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm image vectors of normalized `pixels` ``[N, 3, S, S]`` (tower in eval mode)."""
    was_training = tower.training
    tower.eval()
    with torch.inference_mode():
        vectors = torch.cat([F.normalize(tower(chunk), dim=-1) for chunk in pixels.split(batch_size)])
    tower.train(was_training)
    return vectors


def evaluate_lit(image_vectors: torch.Tensor, text_vectors: torch.Tensor,
                 labels: Mapping[str, np.ndarray] | None = None,
                 class_vectors: Mapping[str, tuple[list[str], torch.Tensor]] | None = None) -> dict[str, float]:
    """Retrieval and zero-shot metrics of paired unit vectors ``[N, D]`` (row i of both is object i).

    ``text_to_image_r1``: the query's own image is the top hit; ``text_to_image_r5`` likewise in
    the top 5; with `labels` (attribute -> ``[N]`` strings) also ``..._r1_same_labels``: the top
    image has every label of the query's object (captions of identical objects are identical).
    `class_vectors` (attribute -> (class names, ``[C, D]`` text vectors)) adds
    ``zero_shot_<attribute>`` accuracy of the images.
    """
    similarity = text_vectors @ image_vectors.T
    target = torch.arange(len(similarity))
    top = similarity.topk(min(5, similarity.shape[1]), dim=1).indices
    metrics = {"text_to_image_r1": float((top[:, 0] == target).float().mean()),
               "text_to_image_r5": float((top == target[:, None]).any(dim=1).float().mean()),
               "chance_r1": 1.0 / len(similarity)}
    if labels:
        same = np.ones(len(similarity), dtype=bool)
        best = top[:, 0].numpy()
        for values in labels.values():
            same &= np.asarray(values)[best] == np.asarray(values)
        metrics["text_to_image_r1_same_labels"] = float(same.mean())
    for attribute, (names, vectors) in (class_vectors or {}).items():
        predicted = np.array(names)[(image_vectors @ vectors.T).argmax(dim=1).numpy()]
        if labels and attribute in labels:
            metrics[f"zero_shot_{attribute}"] = float((predicted == np.asarray(labels[attribute])).mean())
            metrics[f"zero_shot_{attribute}_chance"] = 1.0 / len(names)
    return metrics


def train_lit(images: np.ndarray | torch.Tensor, captions: Sequence[Sequence[str] | str],
              config: LiTTrainConfig | None = None, *, val_images: np.ndarray | torch.Tensor | None = None,
              val_captions: Sequence[Sequence[str] | str] | None = None,
              val_labels: Mapping[str, np.ndarray] | None = None,
              class_prompts: Mapping[str, Mapping[str, str]] | None = None,
              progress: bool = False) -> LiTResult:
    """Train a `lit` image tower on uint8 `images` ``[N, H, W, 3]`` and their `captions`
    (per image a string or a list of strings; one is drawn at random per step).

    With `val_images`/`val_captions` (first caption of each is the query) the result's
    `metrics` hold `evaluate_lit` measurements; `val_labels` and `class_prompts` (attribute ->
    {class: prompt}) add label-aware R@1 and zero-shot accuracy.
    """
    config = config or LiTTrainConfig()
    if len(images) != len(captions):
        raise InputError(f"`captions`: expected one entry per image ({len(images)}), got {len(captions)}")
    if len(images) < 2:
        raise InputError(f"`images`: contrastive training needs at least 2 images, got {len(images)}")
    images = _check_images(images, "images")
    unique_captions, caption_index = _caption_index(captions)
    if val_images is not None:
        val_images = _check_images(val_images, "val_images")
        if val_captions is None or len(val_captions) != len(val_images):
            raise InputError(f"`val_captions`: expected one entry per validation image ({len(val_images)}), "
                             f"got {None if val_captions is None else len(val_captions)}")
    anchor = LiTAnchor(LiTAnchorConfig(tower=config.tower, text_model=config.text_model, seed=config.seed))
    tower = anchor.tower
    anchor.tower = torch.nn.Identity()  # the anchor only lends its text model; the tower trains alone
    tower.train().requires_grad_(True)
    pixels = _pixels(images, anchor)
    caption_vectors = embed_texts(anchor, unique_captions)
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(pixels))
    steps_per_epoch = max(1, len(pixels) // batch)
    total_steps = max(1, int(round(config.epochs * steps_per_epoch)))
    log_scale = torch.nn.Parameter(torch.tensor(math.log(CLIP_INIT_LOGIT_SCALE)))
    optimizer = _optimizer(tower, log_scale, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))
                                                 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    from open_clip.loss import ClipLoss

    loss_fn = ClipLoss()
    val = None
    if val_images is not None and val_captions is not None:
        val_pixels = _pixels(val_images, anchor)
        firsts = [c if isinstance(c, str) else c[0] for c in val_captions]
        val = (val_pixels, embed_texts(anchor, firsts))
    class_vectors = {attribute: (list(prompts), embed_texts(anchor, list(prompts.values())))
                     for attribute, prompts in (class_prompts or {}).items()}
    result = LiTResult(tower=tower, logit_scale=CLIP_INIT_LOGIT_SCALE, config=config,
                       tower_config=tower_config_dict(config.tower))
    start = time.perf_counter()
    step, losses = 0, []
    bar = tqdm(total=total_steps, desc="train lit image tower", unit="step", disable=not progress)
    while step < total_steps:
        order = torch.randperm(len(pixels), generator=generator)
        for first in range(0, steps_per_epoch * batch, batch):
            if step >= total_steps:
                break
            rows = order[first:first + batch]
            picks = torch.tensor([int(caption_index[i][torch.randint(len(caption_index[i]), (1,), generator=generator)])
                                  for i in rows.tolist()])
            image_features = F.normalize(tower(_augment(pixels[rows], config, generator)), dim=-1)
            loss = loss_fn(image_features, caption_vectors[picks], log_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                log_scale.clamp_(0.0, math.log(CLIP_MAX_LOGIT_SCALE))
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if step % steps_per_epoch == 0 or step == total_steps:
                epoch = step / steps_per_epoch
                record: dict[str, Any] = {"epoch": round(epoch, 3), "step": step,
                                          "loss": float(np.mean(losses[-steps_per_epoch:])),
                                          "logit_scale": float(log_scale.detach().exp()),
                                          "seconds": round(time.perf_counter() - start, 2)}
                if val is not None and config.eval_every_epochs and round(epoch) % config.eval_every_epochs == 0:
                    record.update(evaluate_lit(encode_images(tower, val[0]), val[1]))
                result.history.append(record)
    bar.close()
    result.seconds = time.perf_counter() - start
    tower.eval().requires_grad_(False)
    result.logit_scale = float(log_scale.detach().exp())
    if val is not None:
        result.metrics = evaluate_lit(encode_images(tower, val[0]), val[1], val_labels, class_vectors)
    return result


def save_lit_bundle(result: LiTResult, out_dir: str | Path, name: str = "lit",
                    info: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle folder (``bundle.json`` + ``anchor/image-tower.safetensors``) for `result`.

    ``anybind.load(out_dir)`` then gives a model whose anchor is the trained `lit` anchor
    (image and text modalities; bind others to it with ``anybind train``). Writes are atomic.
    """
    from safetensors.torch import save

    from anybind.model import BUNDLE_FILE, FORMAT_VERSION, MODEL_FORMAT
    from anybind.world.files import atomic_write_bytes

    folder = Path(out_dir).expanduser()
    tower_name = result.config.tower if isinstance(result.config.tower, str) else "custom"
    tensors = {k: v.contiguous() for k, v in tower_weights_tensors(result.tower, result.logit_scale).items()}
    atomic_write_bytes(folder / TOWER_FILE, save(tensors))
    provenance = {"trained_by": "anybind.world.lit_training.train_lit", "seconds": round(result.seconds, 1),
                  "train_config": {k: v for k, v in vars(result.config).items()}, "metrics": result.metrics,
                  **dict(info or {})}
    bundle = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "name": name,
              "anchor": lit_spec(result.tower_config, TOWER_FILE, result.config.text_model,
                                 name=f"{tower_name}+{Path(result.config.text_model).name}"),
              "modalities": {}, "info": provenance}
    atomic_write_bytes(folder / BUNDLE_FILE, (json.dumps(bundle, indent=2, default=str) + "\n").encode())
    return folder
