"""Training a LiT anchor: an anchor's image tower fitted to its frozen text model on image-caption pairs.

LiT (Zhai et al. 2022) with the text side locked, as a second objective of the shared training
loop (`anybind.train.run.TrainingRun`): the trainable side is the anchor's image tower on
images, the frozen side the text model's vectors of the captions (computed once, cached on
disk). Per step every image of the batch gets one of its captions at random and a random
shift/flip (never cached), both seeded by (seed, micro-step), so a resumed run continues
exactly where it stopped. Loss, optimizer, schedule, precision, input pipeline, checkpoints
and metrics are the binding loop's. Two entry points:

- `train_lit(images, captions, config)`: uint8 arrays in memory -> `LiTResult` (+ `save_lit_bundle`).
- `train_anchor(recipe)`: ``anybind train-anchor RECIPE.yaml`` -- an image-caption manifest
  (``input`` image path, ``caption``, optional ``split``), checkpoints, ``--resume``, metrics
  and a bundle folder ``anybind.load`` reads.

The anchor is built through the registry (kind ``lit``) and used through the
`anybind.anchor.TrainableTowerAnchor` protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.anchor import TrainableTowerAnchor
from anybind.config import to_dict
from anybind.errors import ConfigError, InputError
from anybind.registry import get_anchor
from anybind.train.distributed import barrier
from anybind.train.lit_config import (
    LiTRecipe,
    LiTTrainConfig,
    lit_differences,
    lit_settings,
    load_lit_recipe,
)
from anybind.train.lit_data import (
    TensorRows,
    augment,
    caption_index,
    caption_vectors,
    check_images,
    embed_texts,
    encode_images,
    evaluate_lit,
    group_by_image,
    image_loader,
    image_pixels,
    load_all,
)
from anybind.train.pipeline import MicroBatches
from anybind.train.run import PROBE_FRACTION, RunSettings, TrainingRun, training_process
from anybind.train.run_dir import read_metrics

LOG = logging.getLogger("anybind.train")
RUN_KIND = "train-anchor"
ANCHOR_KIND = "lit"
BUNDLE_FOLDER = "bundle"
VAL_COLUMNS = ["val_text_to_image_r1", "val_text_to_image_r5"]

__all__ = ["LiTResult", "LiTRun", "TrainAnchorResult", "lit_anchor", "save_lit_bundle", "train_anchor",
           "train_lit"]


@dataclass
class LiTResult:
    """What `train_lit` returns: the trained tower (inside its anchor), its logit scale and the measurements."""

    anchor: TrainableTowerAnchor  # the anchor whose tower was trained (its text side frozen)
    logit_scale: float
    config: LiTTrainConfig
    history: list[dict] = field(default_factory=list)  # per-epoch {"epoch", "step", "loss", "logit_scale", "seconds"}
    metrics: dict = field(default_factory=dict)  # final val metrics (see `evaluate_lit`)
    seconds: float = 0.0  # training-loop wall time (without caption embedding)

    @property
    def tower(self) -> torch.nn.Module:
        """The trained image tower."""
        return self.anchor.tower

    @property
    def tower_config(self) -> dict[str, Any]:
        """The tower's config fields (frozen into the bundle)."""
        return self.anchor.tower_record()


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


def lit_anchor(config: LiTTrainConfig, device: torch.device | str = "cpu") -> TrainableTowerAnchor:
    """A random-init anchor of kind ``lit`` (from the registry) with `config`'s tower, text model and
    seed on `device`: it lends its frozen text model, its preprocessing and the tower to train."""
    anchor = get_anchor(ANCHOR_KIND).from_spec({"kind": ANCHOR_KIND, "tower": config.tower,
                                                "text_model": config.text_model, "seed": config.seed})
    if not isinstance(anchor, TrainableTowerAnchor):
        raise ConfigError(f"anchor kind {ANCHOR_KIND!r} ({type(anchor).__name__}) has no trainable image tower")
    return anchor.to(device)  # type: ignore[attr-defined,no-any-return]


class LiTRun(TrainingRun):
    """A LiT run: the anchor's image tower against frozen caption vectors (see the module docstring)."""

    kind = RUN_KIND
    checkpoint_key = "tower"
    metric_columns = ["epoch", "lr", "train_loss", "logit_scale", "temperature", *VAL_COLUMNS]
    progress_label = "train lit image tower"

    def __init__(self, settings: RunSettings, device: torch.device, config: LiTTrainConfig,
                 anchor: TrainableTowerAnchor) -> None:
        super().__init__(settings, device)
        self.config, self.anchor = config, anchor
        self.module = anchor.tower
        self.val: tuple[torch.Tensor, torch.Tensor] | None = None
        self.bundle: Callable[[Mapping[str, float]], Path] | None = None  # writes the bundle at the end
        self.cached_in_memory = True

    def use_data(self, images: Sequence[Any], load: Callable[[list[Any]], torch.Tensor], vectors: torch.Tensor,
                 captions_of: Sequence[np.ndarray], *, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 cached_in_memory: bool = True) -> None:
        """The training data: `images` (what `load` turns into ``[b, 3, S, S]`` pixels), `vectors`
        ``[U, D]`` frozen caption vectors, `captions_of[i]` the rows of image i's captions; `val`
        (pixels ``[V, 3, S, S]``, caption vectors ``[V, D]``) for the validation metrics."""
        self.caption_vectors, self.captions_of, self.val = vectors, captions_of, val
        self.cached_in_memory = cached_in_memory
        self.module.requires_grad_(True)
        self.dataset = MicroBatches(images, load, self.settings.train.batch_size, self.settings.seed, self.rank,
                                    self.world_size)

    def micro_batch(self, micro_step: int, loaded: tuple[Any, torch.Tensor] | None = None) -> tuple[Any, torch.Tensor]:
        """Augmented pixels of this rank's images of micro-step `micro_step` and, for each, the frozen
        vector of one of its captions drawn at random (both seeded by (seed, micro-step))."""
        pixels, row_tensor = loaded if loaded is not None else self.dataset[micro_step]
        rows = row_tensor.tolist()
        batch, offset = self.settings.train.batch_size, self.rank * len(rows)
        generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + micro_step + 1)
        draws = torch.rand(batch, generator=generator)[offset:offset + len(rows)].tolist()
        picks = [int(self.captions_of[i][int(u * len(self.captions_of[i]))]) for i, u in zip(rows, draws)]
        pixels = augment(pixels, self.config.shift_pixels, self.config.flip, generator, batch, offset)
        return pixels.to(self.device, non_blocking=True), self.caption_vectors[picks].to(self.device)

    def probe_batch(self) -> tuple[Any, torch.Tensor]:
        """A quarter of micro-batch 0."""
        pixels, vectors = self.micro_batch(0)
        count = max(2, len(pixels) // PROBE_FRACTION)
        return pixels[:count], vectors[:count]

    def probe_workload(self, batch: Any) -> dict[str, Any]:
        """The tower's architecture and the probe's shape."""
        return {"lit_tower": self.anchor.tower_record(), "batch": list(batch.shape)}

    def pipeline(self, last_step: int) -> Any:
        """The shared `DataLoader` pipeline."""
        return self.micro_batches(last_step, cached_in_memory=self.cached_in_memory)

    def validate(self) -> dict[str, float]:
        """Text-to-image R@1/R@5 of the validation images (rank 0; {} without validation data)."""
        metrics: dict[str, float] = {}
        if self.rank == 0 and self.val is not None:
            metrics = evaluate_lit(encode_images(self.module, self.val[0]), self.val[1])
        barrier()
        return metrics

    def metrics_row(self, train_loss: float, metrics: Mapping[str, float]) -> dict[str, float]:
        """The shared row plus ``val_text_to_image_r1``/``_r5``."""
        row = super().metrics_row(train_loss, {})
        row.update({f"val_{k}": v for k, v in metrics.items() if f"val_{k}" in VAL_COLUMNS})
        return row

    def write_bundle(self, metrics: Mapping[str, float]) -> Path | None:
        """The bundle writer given by the entry point (none for `train_lit`)."""
        self.module.eval()
        return self.bundle(metrics) if self.bundle is not None else None


def save_lit_bundle(result: LiTResult, out_dir: str | Path, name: str = "lit",
                    info: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle folder (``bundle.json`` + the anchor's trained weights files) for `result`.

    ``anybind.load(out_dir)`` then gives a model whose anchor is the trained anchor (image and
    text modalities; bind others to it with ``anybind train``). The folder is built beside
    `out_dir` and swapped in, so a reader never sees half a bundle.
    """
    from anybind.atomic import atomic_save_safetensors, atomic_write_json, staged_folder
    from anybind.model import BUNDLE_FILE, FORMAT_VERSION, MODEL_FORMAT, parse_model_config

    folder = Path(out_dir).expanduser()
    spec, files = result.anchor.trained_anchor(result.logit_scale)
    bundle = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "name": name, "anchor": spec, "modalities": {},
              "info": {"trained_by": "anybind.train.lit", "seconds": round(result.seconds, 1),
                       "train_config": to_dict(result.config), "metrics": result.metrics, **dict(info or {})}}
    parse_model_config(bundle, f"bundle {str(folder)!r}")
    with staged_folder(folder) as temp:
        for relative, tensors in files.items():
            atomic_save_safetensors(temp / relative, tensors)
        atomic_write_json(temp / BUNDLE_FILE, bundle)
    return folder


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
    vectors on disk (True: under ``$ANYBIND_HOME``; a path: that folder; False: off). The run
    (the shared loop, checkpoints and metrics) lives in a temporary folder.
    """
    from anybind.model import resolve_device

    config = config or LiTTrainConfig()
    if len(images) != len(captions):
        raise InputError(f"`captions`: expected one entry per image ({len(images)}), got {len(captions)}")
    if len(images) < 2:
        raise InputError(f"`images`: contrastive training needs at least 2 images, got {len(images)}")
    images = check_images(images, "images")
    unique_captions, captions_of = caption_index(captions)
    if val_images is not None:
        val_images = check_images(val_images, "val_images")
        if val_captions is None or len(val_captions) != len(val_images):
            raise InputError(f"`val_captions`: expected one entry per validation image ({len(val_images)}), "
                             f"got {None if val_captions is None else len(val_captions)}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device, "train.device")
    anchor = lit_anchor(config, device)
    pixels = image_pixels(images, anchor)
    vectors = caption_vectors(unique_captions, anchor, text_cache)
    with tempfile.TemporaryDirectory(prefix="anybind-lit-") as folder:
        run = LiTRun(lit_settings(config, len(pixels), folder, progress=progress), device, config, anchor)
        run.claim_folder(to_dict(config), {"kind": "lit-text", "text_model": config.text_model}, resume=False,
                         overwrite=False, differences=lit_differences)
        run.use_data(list(range(len(pixels))), TensorRows(pixels), vectors, captions_of)
        run.prepare(False, len(pixels))
        loop = run.train(None)
        rows = read_metrics(folder)
    anchor.tower.eval().requires_grad_(False)
    result = LiTResult(anchor=anchor, logit_scale=loop.logit_scale, config=config,
                       seconds=sum(loop.step_seconds), history=_epoch_history(rows, loop.step_seconds,
                                                                              run.batches_per_epoch))
    if val_images is not None and val_captions is not None:
        firsts = [c if isinstance(c, str) else c[0] for c in val_captions]
        class_vectors = {attribute: (list(prompts), embed_texts(anchor, list(prompts.values())))
                         for attribute, prompts in (class_prompts or {}).items()}
        result.metrics = evaluate_lit(encode_images(anchor.tower, image_pixels(val_images, anchor)),
                                      embed_texts(anchor, firsts), val_labels, class_vectors)
    return result


def _epoch_history(rows: list[dict[str, float]], seconds: Sequence[float], per_epoch: int) -> list[dict]:
    """Per-epoch records (and the last step) from the run's metrics rows: mean loss of the epoch's
    steps, logit scale and training seconds so far."""
    history = []
    elapsed = np.cumsum(seconds) if len(seconds) else np.zeros(0)
    for index, row in enumerate(rows):
        step = int(row["step"])
        if step % per_epoch == 0 or index == len(rows) - 1:
            window = [r["train_loss"] for r in rows[max(0, index + 1 - per_epoch):index + 1]]
            history.append({"epoch": round(step / per_epoch, 3), "step": step, "loss": float(np.mean(window)),
                            "logit_scale": float(row["logit_scale"]),
                            "seconds": round(float(elapsed[min(index, len(elapsed) - 1)]), 2) if len(elapsed) else 0.0})
    return history


def train_anchor(source: str | Path | Mapping[str, Any] | LiTRecipe, *, resume: bool = False,
                 overwrite: bool = False, stop_after: int | None = None) -> TrainAnchorResult:
    """Run a train-anchor recipe: fit the anchor's image tower to its frozen text model on the
    manifest's image-caption pairs, with checkpoints in ``<output_dir>/checkpoints`` (``resume``
    continues the newest), ``metrics.csv`` and the result bundle in ``<output_dir>/bundle``.
    `stop_after` N ends this call after N steps (checkpointed) without writing the bundle.
    Under ``torchrun`` every rank takes a slice of each batch, as `anybind.train.bind` does.
    """
    recipe = load_lit_recipe(source)
    with training_process(recipe.train.device, stop_after) as device:
        return _train_anchor(recipe, device, resume=resume, overwrite=overwrite, stop_after=stop_after)


def _train_anchor(recipe: LiTRecipe, device: torch.device, *, resume: bool, overwrite: bool,
                  stop_after: int | None) -> TrainAnchorResult:
    from anybind.train.manifest import read_pairs, split_pairs

    config, data = recipe.train, recipe.data
    if config.num_threads:
        torch.set_num_threads(config.num_threads)

    def read(path: str, argument: str) -> Any:
        return read_pairs(path, input_column=data.input_column, partner_columns=("caption",),
                          skip_bad_rows=data.skip_bad_rows, argument=argument)

    main = read(data.manifest, "data.manifest")
    skipped = len(main.skipped)
    if data.val_manifest:
        val_set = read(data.val_manifest, "data.val_manifest")
        train_pairs, val_pairs, skipped = main.pairs, val_set.pairs, skipped + len(val_set.skipped)
    else:
        train_pairs, val_pairs = split_pairs(main.pairs, data.val_fraction, config.seed)
    paths, captions = group_by_image(train_pairs)
    if len(paths) < 2:
        raise InputError(f"`data.manifest`: contrastive training needs at least 2 distinct training images, "
                         f"got {len(paths)}")
    anchor = lit_anchor(config, device)
    settings = lit_settings(config, len(paths), recipe.output_dir, eval_every_steps=recipe.eval_every_steps,
                            checkpoint_every_steps=recipe.checkpoint_every_steps, keep_last=recipe.keep_last,
                            tensorboard=recipe.tensorboard, progress=recipe.progress, num_workers=data.num_workers,
                            prefetch_batches=data.prefetch_batches)
    run = LiTRun(settings, device, config, anchor)
    recipe_dict = to_dict(recipe)
    anchor_record = {"kind": "lit-text", "text_model": config.text_model, "tower": anchor.tower_record()}
    resumed = run.claim_folder(recipe_dict, anchor_record, resume=resume, overwrite=overwrite,
                               differences=lit_differences)
    load = image_loader(anchor, cache=data.cache_inputs, cache_dir=data.input_cache_dir)
    val_paths, val_captions = group_by_image(val_pairs)
    fill = getattr(load, "fill", None)
    if fill is not None:  # the decode-once cache: every image decoded (or read from the store) up front
        fill(paths + val_paths, progress=recipe.progress and run.rank == 0)
    unique_captions, captions_of = caption_index(captions)
    text_cache = data.text_cache_dir or True if data.cache_text else False
    if run.rank != 0:
        barrier()  # rank 0 fills the text-vector cache first
    vectors = caption_vectors(unique_captions, anchor, text_cache)
    val = None
    if val_paths:
        val = (load_all(load, val_paths), caption_vectors([c[0] for c in val_captions], anchor, text_cache))
    if run.rank == 0:
        barrier()
    run.use_data(paths, load, vectors, captions_of, val=val,
                 cached_in_memory=bool(getattr(load, "all_in_memory", False)))
    run.prepare(resumed, len(paths))
    first_step = run.step
    tower_name = config.tower if isinstance(config.tower, str) else "custom"

    def write(metrics: Mapping[str, float]) -> Path:
        result = LiTResult(anchor=anchor, logit_scale=run.loss.logit_scale, config=config, metrics=dict(metrics))
        return save_lit_bundle(result, run.output_dir / BUNDLE_FOLDER, name=recipe.name or f"lit-{tower_name}",
                               info={"recipe": recipe_dict, "train_images": len(paths), "val_images": len(val_paths),
                                     "rows_skipped": skipped,
                                     "precision": {"used": run.precision, "why": run.precision_reason}})

    run.bundle = write
    loop = run.train(stop_after)
    return TrainAnchorResult(output_dir=run.output_dir, steps=loop.step, total_steps=loop.total_steps,
                             bundle_dir=loop.bundle_dir, metrics=loop.metrics, resumed_from=first_step)
