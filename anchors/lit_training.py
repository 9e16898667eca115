"""Training a `lit` anchor: a CNN image tower fitted to a frozen sentence encoder on image-caption pairs.

LiT (Zhai et al. 2022) with the text side locked: captions are embedded once by the frozen
text model, then only the image tower and a logit scale are trained with the symmetric CLIP
InfoNCE loss (open_clip's `ClipLoss`), AdamW, linear warmup and cosine decay. Every step's
batch, caption choice and augmentation are seeded by (seed, step), so a resumed run continues
exactly where it stopped. Two entry points:

- `train_lit(images, captions, config)`: uint8 arrays in memory -> `LiTResult` (+ `save_lit_bundle`).
- `train_anchor(recipe)`: ``anybind train-anchor RECIPE.yaml`` -- an image-caption manifest
  (the binding trainer's format: ``input`` image path, ``caption``, optional ``split``),
  checkpoints, ``--resume``, metrics and a bundle folder ``anybind.load`` reads, built on the
  reusable pieces of `anybind.train`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

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
from anybind.config import from_dict, read_data_file, to_dict
from anybind.errors import ConfigError, InputError
from anybind.progress import progress_bar

CLIP_MAX_LOGIT_SCALE = 100.0  # CLIP (Radford et al. 2021): logit scale clipped at 100
LOG = logging.getLogger("anybind.train")
TOWER_FILE = "anchor/image-tower.safetensors"
RUN_KIND = "train-anchor"


@dataclass(frozen=True)
class LiTTrainConfig:
    """What to train and how (`train_lit`, and the ``train:`` block of a train-anchor recipe)."""

    tower: str | dict = "cnn64"  # tower config name in configs/anchors/lit/, or its fields
    text_model: str = MINILM_PACKAGE  # frozen text encoder (package name or folder)
    epochs: float | None = 12.0  # passes over the training images (ignored when `steps` is set)
    steps: int | None = None  # optimizer steps (overrides `epochs`)
    batch_size: int = 128  # images per contrastive batch (one random caption each)
    lr: float = 2.0e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW decay of conv/linear weights (not norms, biases, scale)
    warmup_steps: int = 30  # linear warmup steps
    shift_pixels: int = 4  # random translation augmentation, pixels (0: off)
    flip: bool = True  # random horizontal flips
    seed: int = 0  # seeds init, batches and augmentation
    num_threads: int | None = None  # torch CPU threads (default: torch's)
    device: str | None = None  # training device (default: cuda if available, else cpu)
    # bf16 autocast of the tower; auto: where the hardware makes it faster (`anybind.train.precision`)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


@dataclass
class LiTResult:
    """What `train_lit` returns: the trained tower, its logit scale and the measurements."""

    tower: ConvImageTower
    logit_scale: float
    config: LiTTrainConfig
    tower_config: dict  # the tower's config fields (frozen into the bundle)
    history: list[dict] = field(default_factory=list)  # per-epoch {"epoch", "step", "loss", "seconds", ...}
    metrics: dict = field(default_factory=dict)  # final val metrics (see `evaluate_lit`)
    seconds: float = 0.0  # training-loop wall time (without caption embedding)


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
            tokens = {k: v.to(anchor.device) for k, v in anchor.tokenize(list(texts[start:start + batch_size])).items()}
            chunks.append(F.normalize(anchor.encode_tokens(tokens).float(), dim=-1).cpu())
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


def encode_images(tower: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm image vectors of normalized `pixels` ``[N, 3, S, S]`` (tower in eval mode)."""
    was_training = tower.training
    tower.eval()
    device = next(tower.parameters()).device
    with torch.inference_mode():
        vectors = torch.cat([F.normalize(tower(chunk.to(device)), dim=-1).cpu() for chunk in pixels.split(batch_size)])
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
    ``zero_shot_<attribute>`` accuracy of the images (with `labels`).
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
        if labels and attribute in labels:
            predicted = np.array(names)[(image_vectors @ vectors.T).argmax(dim=1).numpy()]
            metrics[f"zero_shot_{attribute}"] = float((predicted == np.asarray(labels[attribute])).mean())
            metrics[f"zero_shot_{attribute}_chance"] = 1.0 / len(names)
    return metrics


def total_steps(config: LiTTrainConfig, n_images: int) -> int:
    """Optimizer steps of a run: `config.steps`, else `config.epochs` full batches per pass."""
    if config.steps is not None:
        return int(config.steps)
    per_epoch = max(1, n_images // min(config.batch_size, n_images))
    return max(1, int(round(float(config.epochs or 1.0) * per_epoch)))


@dataclass
class LiTFitState:
    """The trainable state of a fit (what a checkpoint holds) and the step reached."""

    tower: ConvImageTower
    log_scale: torch.nn.Parameter
    optimizer: torch.optim.AdamW
    step: int = 0
    precision: str = "fp32"  # the resolved `LiTTrainConfig.precision` (fp32 or bf16)

    def to_checkpoint(self) -> dict[str, Any]:
        """A nested dict for `anybind.train.checkpoints.save_state`."""
        return {"tower": self.tower.state_dict(), "log_scale": self.log_scale.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "step": self.step, "precision": self.precision}

    def load_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Restore what `to_checkpoint` returned."""
        state = {**state, "optimizer": _optimizer_to(state["optimizer"], self.log_scale.device)}
        self.tower.load_state_dict(state["tower"])
        with torch.no_grad():
            self.log_scale.copy_(state["log_scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.precision = str(state.get("precision", "fp32"))


def _optimizer_to(state: Any, device: torch.device) -> Any:
    """An optimizer state dict with every tensor moved to `device` (checkpoints load on CPU)."""
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, Mapping):
        return {k: _optimizer_to(v, device) for k, v in state.items()}
    if isinstance(state, list):
        return [_optimizer_to(v, device) for v in state]
    return state


def new_fit_state(tower: ConvImageTower, config: LiTTrainConfig) -> LiTFitState:
    """Fresh optimizer state for `tower`: AdamW (decay on >= 2-D weights only) and the CLIP initial scale."""
    device = next(tower.parameters()).device
    log_scale = torch.nn.Parameter(torch.tensor(math.log(CLIP_INIT_LOGIT_SCALE), device=device))
    decay = [p for p in tower.parameters() if p.ndim >= 2]
    rest = [p for p in tower.parameters() if p.ndim < 2] + [log_scale]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    return LiTFitState(tower=tower, log_scale=log_scale, optimizer=optimizer)


def epoch_batch_rows(step: int, rows: int, batch_size: int, seed: int) -> torch.Tensor:
    """Row indices of batch `step`: a shuffle seeded by (seed, epoch), the last partial batch dropped."""
    epoch, index = divmod(step, max(1, rows // batch_size))
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[index * batch_size:(index + 1) * batch_size]


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to 0 at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


def resolve_lit_precision(fit: LiTFitState, pixels: torch.Tensor, config: LiTTrainConfig) -> str:
    """Set `fit.precision` from `config.precision` (``auto``: time a quarter batch of tower steps in fp32
    and bf16, `anybind.train.precision.choose_precision`); weights, grads and RNG are left untouched.
    Returns the reason in words (for the log)."""
    from anybind.train.checkpoints import capture_rng_state, restore_rng_state
    from anybind.train.precision import autocast, choose_precision, timed

    device = fit.log_scale.device
    probe = pixels[:max(2, min(config.batch_size, len(pixels)) // 4)].to(device)
    saved = {k: v.clone() for k, v in fit.tower.state_dict().items()}
    was_training = fit.tower.training
    needs_grad = [parameter.requires_grad for parameter in fit.tower.parameters()]
    fit.tower.train().requires_grad_(True)

    def step(precision: str) -> None:
        with autocast(precision, device):
            features = fit.tower(probe)
        features.float().square().mean().backward()

    rng = capture_rng_state()
    workload = {"lit_tower": tower_config_dict(config.tower), "batch": list(probe.shape)}
    fit.precision, reason = choose_precision(config.precision, device, lambda p: timed(lambda: step(p)), workload)
    restore_rng_state(rng)
    for parameter, flag in zip(fit.tower.parameters(), needs_grad):
        parameter.grad = None
        parameter.requires_grad_(flag)
    fit.tower.load_state_dict(saved)
    fit.tower.train(was_training)
    return reason


def fit_lit_tower(fit: LiTFitState, pixels: torch.Tensor, caption_vectors: torch.Tensor,
                  caption_index: Sequence[np.ndarray], config: LiTTrainConfig, *,
                  on_step: Callable[[LiTFitState, float], None] | None = None, stop_after: int | None = None,
                  progress: bool = False) -> None:
    """Train `fit` from `fit.step` to `total_steps` (or `stop_after` more steps) in place.

    `pixels` ``[N, 3, S, S]`` normalized images, `caption_vectors` ``[U, D]`` unit-norm frozen
    text vectors, `caption_index[i]` the rows of image i's captions. `on_step(fit, loss)` runs
    after every step (checkpoints, logging).
    """
    from open_clip.loss import ClipLoss

    from anybind.train.optim import warn_if_warmup_too_long
    from anybind.train.precision import autocast

    steps = total_steps(config, len(pixels))
    if fit.step == 0:
        warn_if_warmup_too_long(config.warmup_steps, steps, "train.warmup_steps")
    batch = min(config.batch_size, len(pixels))
    end = steps if stop_after is None else min(steps, fit.step + stop_after)
    loss_fn = ClipLoss()
    fit.tower.train().requires_grad_(True)
    bar = progress_bar(total=end - fit.step, desc="train lit image tower", unit="step", disable=not progress)
    while fit.step < end:
        step = fit.step
        for group in fit.optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.warmup_steps, steps)
        rows = epoch_batch_rows(step, len(pixels), batch, config.seed)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 1)
        draws = torch.rand(len(rows), generator=generator).tolist()
        picks = torch.tensor([int(caption_index[i][int(u * len(caption_index[i]))]) for i, u in zip(rows.tolist(), draws)])
        device = fit.log_scale.device
        images = _augment(pixels[rows], config, generator).to(device, non_blocking=True)
        with autocast(fit.precision, device):
            image_features = F.normalize(fit.tower(images).float(), dim=-1)
        loss = loss_fn(image_features, caption_vectors[picks].to(device), fit.log_scale.exp())
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        fit.optimizer.step()
        with torch.no_grad():
            fit.log_scale.clamp_(0.0, math.log(CLIP_MAX_LOGIT_SCALE))
        fit.step += 1
        value = float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        if on_step is not None:
            on_step(fit, value)
    bar.close()
    fit.tower.eval().requires_grad_(False)


def _text_anchor(config: LiTTrainConfig) -> LiTAnchor:
    """A random-init `lit` anchor of `config`'s tower on the training device: it lends its frozen
    text model, its preprocessing and the tower to train."""
    from anybind.model import resolve_device

    anchor = LiTAnchor(LiTAnchorConfig(tower=config.tower, text_model=config.text_model, seed=config.seed))
    return anchor.to(resolve_device(config.device, "train.device"))


def train_lit(images: np.ndarray | torch.Tensor, captions: Sequence[Sequence[str] | str],
              config: LiTTrainConfig | None = None, *, val_images: np.ndarray | torch.Tensor | None = None,
              val_captions: Sequence[Sequence[str] | str] | None = None,
              val_labels: Mapping[str, np.ndarray] | None = None,
              class_prompts: Mapping[str, Mapping[str, str]] | None = None,
              text_cache: bool | str | Path = True, progress: bool = False) -> LiTResult:
    """Train a `lit` image tower on uint8 `images` ``[N, H, W, 3]`` and their `captions`
    (per image a string or a list of strings; one is drawn at random per step).

    With `val_images`/`val_captions` (the first caption of each is the query) the result's
    `metrics` hold `evaluate_lit` measurements; `val_labels` and `class_prompts` (attribute ->
    {class: prompt}) add label-aware R@1 and zero-shot accuracy. `text_cache` keeps caption
    vectors on disk (True: under ``$ANYBIND_HOME``; a path: that folder; False: off).
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
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    anchor = _text_anchor(config)
    pixels = _pixels(images, anchor)
    if text_cache is False:
        caption_vectors = embed_texts(anchor, unique_captions)
    else:
        caption_vectors = cached_text_vectors(unique_captions, anchor, config.text_model,
                                              None if text_cache is True else text_cache)
    result = LiTResult(tower=anchor.tower, logit_scale=CLIP_INIT_LOGIT_SCALE, config=config,
                       tower_config=tower_config_dict(config.tower))
    fit = new_fit_state(anchor.tower, config)
    resolve_lit_precision(fit, pixels, config)
    per_epoch = max(1, len(pixels) // min(config.batch_size, len(pixels)))
    losses: list[float] = []
    start = time.perf_counter()

    def record(state: LiTFitState, loss: float) -> None:
        losses.append(loss)
        if state.step % per_epoch == 0 or state.step == total_steps(config, len(pixels)):
            result.history.append({"epoch": round(state.step / per_epoch, 3), "step": state.step,
                                   "loss": float(np.mean(losses[-per_epoch:])),
                                   "logit_scale": float(state.log_scale.detach().exp()),
                                   "seconds": round(time.perf_counter() - start, 2)})

    fit_lit_tower(fit, pixels, caption_vectors, caption_index, config, on_step=record, progress=progress)
    result.seconds = time.perf_counter() - start
    result.logit_scale = float(fit.log_scale.detach().exp())
    if val_images is not None and val_captions is not None:
        firsts = [c if isinstance(c, str) else c[0] for c in val_captions]
        class_vectors = {attribute: (list(prompts), embed_texts(anchor, list(prompts.values())))
                         for attribute, prompts in (class_prompts or {}).items()}
        result.metrics = evaluate_lit(encode_images(anchor.tower, _pixels(val_images, anchor)),
                                      embed_texts(anchor, firsts), val_labels, class_vectors)
    return result


def save_lit_bundle(result: LiTResult, out_dir: str | Path, name: str = "lit",
                    info: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle folder (``bundle.json`` + ``anchor/image-tower.safetensors``) for `result`.

    ``anybind.load(out_dir)`` then gives a model whose anchor is the trained `lit` anchor
    (image and text modalities; bind others to it with ``anybind train``). The folder is built
    beside `out_dir` and swapped in, so a reader never sees half a bundle.
    """
    from anybind.model import BUNDLE_FILE, FORMAT_VERSION, MODEL_FORMAT, parse_model_config
    from anybind.atomic import atomic_save_safetensors, atomic_write_json, staged_folder

    folder = Path(out_dir).expanduser()
    tower_name = result.config.tower if isinstance(result.config.tower, str) else "custom"
    text_name = Path(result.config.text_model).name
    bundle = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "name": name,
              "anchor": lit_spec(result.tower_config, TOWER_FILE, result.config.text_model,
                                 name=f"{tower_name}+{text_name}"),
              "modalities": {},
              "info": {"trained_by": "anybind.anchors.lit_training", "seconds": round(result.seconds, 1),
                       "train_config": to_dict(result.config), "metrics": result.metrics, **dict(info or {})}}
    parse_model_config(bundle, f"bundle {str(folder)!r}")
    with staged_folder(folder) as temp:
        atomic_save_safetensors(temp / TOWER_FILE, tower_weights_tensors(result.tower, result.logit_scale))
        atomic_write_json(temp / BUNDLE_FILE, bundle)
    return folder


# ---- `anybind train-anchor RECIPE.yaml`: the same run machinery as `anybind train` ----


@dataclass(frozen=True)
class LiTDataConfig:
    """Where the image-caption pairs are (the binding trainer's manifest format)."""

    manifest: str  # CSV/JSONL with an image path column and a `caption` column (relative to the recipe)
    val_manifest: str | None = None  # separate validation pairs; else the `split` column or `val_fraction`
    val_fraction: float = 0.1  # share of images held out by the seeded rule (no split column, no val_manifest)
    input_column: str = "input"  # column holding the image path (relative to the manifest)
    skip_bad_rows: bool = False  # skip (and count) rows with missing/corrupt images instead of failing
    cache_text: bool = True  # keep caption vectors of the frozen text model under $ANYBIND_HOME
    cache_inputs: bool = True  # decode images once: memory + the on-disk input cache under $ANYBIND_HOME
    input_cache_dir: str | None = None  # default: $ANYBIND_HOME/input-cache/<image preprocess digest>
    text_cache_dir: str | None = None  # default: $ANYBIND_HOME/anchor-cache/<text model digest>


@dataclass(frozen=True)
class LiTRecipe:
    """A train-anchor recipe (YAML)::

        kind: lit
        output_dir: runs/lit-world
        data: {manifest: world/pairs/image-caption.csv}
        train: {tower: cnn64, epochs: 10, batch_size: 128, lr: 2.0e-3}
    """

    output_dir: str  # run folder: run.json, checkpoints/, metrics.csv, bundle/
    data: LiTDataConfig
    kind: str = "lit"  # the anchor kind to build (only `lit` so far)
    train: LiTTrainConfig = field(default_factory=LiTTrainConfig)
    eval_every_steps: int = 0  # validation R@1 every N steps (0: only at the end)
    checkpoint_every_steps: int = 50  # 0: only the final checkpoint
    keep_last: int = 2  # checkpoints kept
    tensorboard: bool = False  # also log to <output_dir>/tensorboard
    progress: bool = True  # tqdm bar
    name: str | None = None  # bundle name (default: "lit-<tower>")


# Recipe fields that may change between a run and its `--resume` (they do not change the math).
RESUMABLE_CHANGES = ("output_dir", "train.num_threads", "data.cache_inputs", "data.input_cache_dir", "eval_every_steps", "checkpoint_every_steps",
                     "keep_last", "tensorboard", "progress")


def load_lit_recipe(source: str | Path | Mapping[str, Any] | LiTRecipe) -> LiTRecipe:
    """A recipe from a YAML/JSON file (paths relative to its folder), a mapping (relative to the
    working folder) or a `LiTRecipe`; raises `ConfigError` naming unknown keys and bad values."""
    if isinstance(source, LiTRecipe):
        return source
    if isinstance(source, Mapping):
        data, where, base = dict(source), "train-anchor recipe", Path.cwd()
    else:
        path = Path(source).expanduser()
        data, where, base = read_data_file(path), f"train-anchor recipe {str(path)!r}", path.parent
    recipe = from_dict(LiTRecipe, data, where)
    if recipe.kind != "lit":
        raise ConfigError(f"{where}: `kind` must be 'lit' (the only trainable anchor kind), got {recipe.kind!r}")
    train = recipe.train
    minimums = {"train.batch_size": (train.batch_size, 2), "keep_last": (recipe.keep_last, 1),
                "train.warmup_steps": (train.warmup_steps, 0), "eval_every_steps": (recipe.eval_every_steps, 0),
                "checkpoint_every_steps": (recipe.checkpoint_every_steps, 0)}
    for name, (value, minimum) in minimums.items():
        if value < minimum:
            raise ConfigError(f"{where}: `{name}` must be >= {minimum}, got {value}")
    if train.steps is not None and train.steps < 1:
        raise ConfigError(f"{where}: `train.steps` must be >= 1, got {train.steps}")
    if train.steps is None and (train.epochs is None or train.epochs <= 0):
        raise ConfigError(f"{where}: give `train.steps` >= 1 or `train.epochs` > 0, got epochs={train.epochs!r}")
    if train.lr <= 0:
        raise ConfigError(f"{where}: `train.lr` must be > 0, got {train.lr}")
    if not 0 <= recipe.data.val_fraction < 1:
        raise ConfigError(f"{where}: `data.val_fraction` must be in [0, 1), got {recipe.data.val_fraction}")

    def absolute(value: str | None) -> str | None:
        return value if value is None or Path(value).expanduser().is_absolute() else str((base / value).resolve())

    data_config = dataclasses.replace(recipe.data, manifest=absolute(recipe.data.manifest),  # type: ignore[arg-type]
                                      val_manifest=absolute(recipe.data.val_manifest),
                                      text_cache_dir=absolute(recipe.data.text_cache_dir),
                                      input_cache_dir=absolute(recipe.data.input_cache_dir))
    return dataclasses.replace(recipe, output_dir=absolute(recipe.output_dir), data=data_config)  # type: ignore[arg-type]


@dataclass
class TrainAnchorResult:
    """The outcome of `train_anchor`."""

    output_dir: Path
    steps: int  # optimizer steps completed
    total_steps: int
    bundle_dir: Path | None  # None when stopped early (resume later)
    metrics: dict = field(default_factory=dict)  # last validation metrics
    resumed_from: int = 0  # the step a resumed run started at

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "tower":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Recipe keys that changed and may not change on resume."""
    before, after = _flatten(old), _flatten(new)
    return sorted(k for k in set(before) | set(after)
                  if before.get(k) != after.get(k) and k not in RESUMABLE_CHANGES)


def _read_image_caption_pairs(recipe: LiTRecipe) -> tuple[list[Any], list[Any], int]:
    """(train pairs, val pairs, rows skipped) from the recipe's manifest(s)."""
    from anybind.train.manifest import read_pairs, split_pairs

    data = recipe.data
    read = lambda path, argument: read_pairs(path, input_column=data.input_column,  # noqa: E731
                                             partner_columns=("caption",), skip_bad_rows=data.skip_bad_rows,
                                             argument=argument)
    main = read(data.manifest, "data.manifest")
    skipped = len(main.skipped)
    if data.val_manifest:
        val_set = read(data.val_manifest, "data.val_manifest")
        return main.pairs, val_set.pairs, skipped + len(val_set.skipped)
    train, val = split_pairs(main.pairs, data.val_fraction, recipe.train.seed)
    return train, val, skipped


def _group_by_image(pairs: Sequence[Any]) -> tuple[list[Path], list[list[str]]]:
    """Unique image paths (first-seen order) and the captions of each."""
    captions: dict[Path, list[str]] = {}
    for pair in pairs:
        captions.setdefault(pair.input, []).append(pair.partner)
    return list(captions), list(captions.values())


def _load_pixels(paths: Sequence[Path], anchor: LiTAnchor, progress: bool, data: LiTDataConfig | None = None
                 ) -> torch.Tensor:
    """``[N, 3, S, S]`` normalized pixels of image files, through the image modality's own loader and,
    when `data.cache_inputs`, the trainer's decode-once input cache (`anybind.train.input_cache`)."""
    from anybind.modalities.image import ImageModality

    modality = ImageModality(anchor.image_preprocess, anchor)
    load: Callable[[list[Path]], Any] = modality.load
    if data is not None and data.cache_inputs:
        import anybind
        from anybind.train.input_cache import (
            FeatureStore,
            FileKeys,
            InputCache,
            content_digest,
            default_store_folder,
        )

        description = {"modality": "image", "preprocess": to_dict(anchor.image_preprocess), "anybind": anybind.__version__}
        store = FeatureStore(default_store_folder(content_digest(description), data.input_cache_dir), description)
        load = InputCache(modality.load, split=modality.split_batch, join=modality.join_batches, key_of=FileKeys(),
                          store=store)
    chunks = []
    for start in progress_bar(range(0, len(paths), 256), desc="load images", unit="chunk", disable=not progress):
        chunks.append(load(list(paths[start:start + 256])))
    return torch.cat(chunks)


def cached_text_vectors(texts: Sequence[str], anchor: LiTAnchor, text_model: str,
                        cache_dir: str | Path | None = None) -> torch.Tensor:
    """``[N, D]`` unit-norm frozen text vectors of `texts`, kept in the on-disk anchor-vector cache
    (`anybind.train.anchor_cache`, default folder under ``$ANYBIND_HOME``) so reruns skip the text model."""
    from anybind.anchor import AnchorIdentity
    from anybind.anchors.lit import load_text_model, resolve_text_model
    from anybind.train.anchor_cache import AnchorVectorCache, partner_key

    folder = resolve_text_model(text_model)
    # The text side alone defines these vectors: key the cache by the text model, not the tower.
    identity = AnchorIdentity(kind="lit-text", config=text_model, tag=None,
                              weights_sha256=load_text_model(str(folder))[2])
    cache = AnchorVectorCache.for_anchor(identity, cache_dir)
    keys = [partner_key("caption", text) for text in texts]
    first_missing: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key not in cache:
            first_missing.setdefault(key, index)
    missing = list(first_missing.values())
    if missing:
        cache.add([keys[i] for i in missing], embed_texts(anchor, [texts[i] for i in missing]))
    return cache.get(keys)


def _caption_vectors(texts: list[str], anchor: LiTAnchor, recipe: LiTRecipe) -> torch.Tensor:
    """Unit-norm frozen text vectors of `texts`, through the on-disk cache when the recipe enables it."""
    if not recipe.data.cache_text:
        return embed_texts(anchor, texts)
    return cached_text_vectors(texts, anchor, recipe.train.text_model, recipe.data.text_cache_dir)


def train_anchor(source: str | Path | Mapping[str, Any] | LiTRecipe, *, resume: bool = False,
                 overwrite: bool = False, stop_after: int | None = None) -> TrainAnchorResult:
    """Run a train-anchor recipe: fit a `lit` image tower to the frozen text model on the
    manifest's image-caption pairs, with checkpoints in ``<output_dir>/checkpoints`` (``resume``
    continues the newest), ``metrics.csv`` and the result bundle in ``<output_dir>/bundle``.
    `stop_after` N ends this call after N steps (checkpointed) without writing the bundle.
    """
    from anybind.train.checkpoints import CheckpointManager
    from anybind.train.run_dir import MetricsLog, check_run_folder, start_run_folder

    recipe = load_lit_recipe(source)
    if stop_after is not None and stop_after < 1:
        raise InputError(f"`stop_after`: expected a positive number of steps, got {stop_after!r}")
    config = recipe.train
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    output = Path(recipe.output_dir)
    recipe_dict = to_dict(recipe)
    anchor = _text_anchor(config)
    anchor_record = {"kind": "lit-text", "text_model": config.text_model, "tower": tower_config_dict(config.tower)}
    resumed = check_run_folder(output, kind=RUN_KIND, config=recipe_dict, anchor=anchor_record, resume=resume,
                               overwrite=overwrite, differences=_differences)
    train_pairs, val_pairs, skipped = _read_image_caption_pairs(recipe)
    paths, captions = _group_by_image(train_pairs)
    if len(paths) < 2:
        raise InputError(f"`data.manifest`: contrastive training needs at least 2 distinct training images, "
                         f"got {len(paths)}")
    start_run_folder(output, kind=RUN_KIND, config=recipe_dict, anchor=anchor_record, resumed=resumed)
    pixels = _load_pixels(paths, anchor, recipe.progress, recipe.data)
    unique_captions, caption_index = _caption_index(captions)
    caption_vectors = _caption_vectors(unique_captions, anchor, recipe)
    val_paths, val_captions = _group_by_image(val_pairs)
    val = None
    if val_paths:
        val = (_load_pixels(val_paths, anchor, False, recipe.data), _caption_vectors([c[0] for c in val_captions], anchor, recipe))
    fit = new_fit_state(anchor.tower, config)
    manager = CheckpointManager(output / "checkpoints", keep_last=recipe.keep_last)
    state = manager.load_latest() if resumed else None
    if state is not None:
        fit.load_checkpoint(state)
        LOG.info("precision: %s (kept from the checkpoint)", fit.precision)
    else:
        reason = resolve_lit_precision(fit, pixels, config)
        LOG.info("precision: %s (train.precision %s: %s)", fit.precision, config.precision, reason)
    first_step = fit.step
    steps = total_steps(config, len(pixels))
    log = MetricsLog(output, ["train_loss", "logit_scale", "lr", "val_text_to_image_r1", "val_text_to_image_r5"],
                     resume_step=first_step, tensorboard=recipe.tensorboard)
    metrics: dict[str, float] = {}

    def validate() -> dict[str, float]:
        if val is None:
            return {}
        return evaluate_lit(encode_images(fit.tower, val[0]), val[1])

    def on_step(state: LiTFitState, loss: float) -> None:
        values = {"train_loss": loss, "logit_scale": float(state.log_scale.detach().exp()),
                  "lr": float(state.optimizer.param_groups[0]["lr"])}
        if recipe.eval_every_steps and state.step % recipe.eval_every_steps == 0 and state.step < steps:
            metrics.update(validate())
            values.update({f"val_{k}": v for k, v in metrics.items() if k.startswith("text_to_image")})
            state.tower.train()
        log.write(state.step, values)
        if recipe.checkpoint_every_steps and state.step % recipe.checkpoint_every_steps == 0:
            manager.save(state.step, state.to_checkpoint())

    try:
        fit_lit_tower(fit, pixels, caption_vectors, caption_index, config, on_step=on_step,
                      stop_after=stop_after, progress=recipe.progress)
        manager.save(fit.step, fit.to_checkpoint())
        bundle_dir = None
        if fit.step >= steps:
            metrics.update(validate())
            log.write(fit.step, {f"val_{k}": v for k, v in metrics.items() if k.startswith("text_to_image")})
            result = LiTResult(tower=fit.tower, logit_scale=float(fit.log_scale.detach().exp()), config=config,
                               tower_config=tower_config_dict(config.tower), metrics=metrics)
            tower_name = config.tower if isinstance(config.tower, str) else "custom"
            bundle_dir = save_lit_bundle(result, output / "bundle", name=recipe.name or f"lit-{tower_name}",
                                         info={"recipe": recipe_dict, "train_images": len(paths),
                                               "val_images": len(val_paths), "rows_skipped": skipped})
    finally:
        log.close()
    return TrainAnchorResult(output_dir=output, steps=fit.step, total_steps=steps, bundle_dir=bundle_dir,
                             metrics=metrics, resumed_from=first_step)
