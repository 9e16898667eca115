"""`bind`: train a modality's encoder against the frozen anchor of a base model.

One call does the whole job (`anybind train RECIPE.yaml` is a thin wrapper):

1. read and validate the manifest(s), split train/val;
2. compute the anchor vectors of every partner once (cached on disk, see `anchor_cache`), and
   load + preprocess every input once (`input_cache`: memory, or a memory-mapped disk store);
   with ``train.params: head`` the frozen backbone's outputs are computed once too;
3. train encoder (+ learnable logit scale) with symmetric InfoNCE or SigLIP, AdamW, cosine
   schedule with warmup, gradient accumulation, clipping, bf16 autocast where it is faster
   (`precision`); batches come from a `DataLoader` (`pipeline`: workers, pinned memory, prefetch);
   under ``torchrun`` each rank takes a slice of every global batch and features are
   gathered with gradients, so the loss is the single-process loss of the global batch;
4. log metrics (CSV + TensorBoard), evaluate R@1/R@5 both ways, checkpoint every N steps;
5. write ``<output_dir>/bundle``: ``anybind.load(bundle).embed(modality, ...)`` works at once.

The data order is a pure function of (seed, step), so `--resume` from a checkpoint (model,
optimizer, scheduler, RNG states, step) ends exactly where an uninterrupted run would.

Notes: `batch_size` is the global contrastive batch; with `grad_accum_steps` > 1 the
negatives of a micro-step are that micro-step's rows only. DDP matches one process exactly for
encoders without batch statistics (BatchNorm layers see each rank's slice; DDP broadcasts
rank 0's running stats). Anchor vectors of all partners are held in memory (N x D float32).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from anybind.config import to_dict
from anybind.errors import ConfigError, InputError
from anybind.model import BoundModel, ModalityConfig, to_device, build_modality, resolve_device, resolve_spec
from anybind.model import load as load_model
from anybind.modality import Encoder
from anybind.train.anchor_cache import AnchorVectorCache, cached_anchor_vectors, embed_partners
from anybind.train.bundle import base_modality_entries, portable_anchor_spec, write_bundle
from anybind.train.checkpoints import CheckpointManager, capture_rng_state, restore_rng_state
from anybind.train.config import BindConfig, bind_config_to_dict, load_bind_config, math_differences
from anybind.progress import progress_bar
from anybind.train.distributed import barrier, gather_objects, join_process_group, local_device, mean_over_ranks, world
from anybind.train.evaluation import paired_recall
from anybind.train.input_cache import FeatureStore, FileKeys, InputCache, content_digest, default_store_folder
from anybind.train.losses import ContrastiveLoss
from anybind.train.manifest import Pair, read_pairs, split_pairs
from anybind.train.optim import adamw_param_groups, cosine_with_warmup
from anybind.train.pipeline import MicroBatches, auto_workers, batch_rows, iterate_micro_batches
from anybind.train.precision import autocast, choose_precision, timed
from anybind.train.run_dir import MetricsLog, check_run_folder, start_run_folder

LOG = logging.getLogger("anybind.train")
RUN_KIND = "bind"
BUNDLE_FOLDER = "bundle"
PROBE_FRACTION = 4  # `precision: auto` times steps on 1/4 of a micro-batch
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "logit_scale", "temperature", "val_r1_modality_to_anchor",
                  "val_r5_modality_to_anchor", "val_r1_anchor_to_modality", "val_r5_anchor_to_modality"]


@dataclass
class BindResult:
    """What a `bind` call produced."""

    output_dir: Path
    bundle_dir: Path | None  # None when stopped early (`stop_after`)
    step: int  # optimizer steps completed in total
    total_steps: int
    train_loss: float  # mean loss of the last logged window
    logit_scale: float
    metrics: dict[str, float] = field(default_factory=dict)  # last validation metrics
    train_rows: int = 0
    val_rows: int = 0
    skipped_rows: int = 0
    steps_per_second: float = 0.0  # optimizer steps per second of training work in this call
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step in this call
    rank: int = 0  # this process's DDP rank (only rank 0 writes files and evaluates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


class BindingObjective(nn.Module):
    """Encoder + contrastive loss as one module, so DDP syncs the logit scale's gradient too."""

    def __init__(self, encoder: Encoder, loss: ContrastiveLoss, precision: str, head_only_features: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.precision = precision
        self.head_only_features = head_only_features  # batches are cached `backbone_features`

    def forward(self, batch: Any, anchor_vectors: torch.Tensor) -> torch.Tensor:
        """Loss of a modality `batch` (or of cached backbone features) against its ``[B, D]`` anchor vectors."""
        with autocast(self.precision, anchor_vectors.device):
            features = self.encoder.forward_head(batch) if self.head_only_features else self.encoder(batch)
        features = F.normalize(features.float(), dim=-1)
        return self.loss(features, anchor_vectors)


__all__ = ["BindResult", "BindingObjective", "autocast", "batch_rows", "bind", "evaluate"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_trainable(encoder: Encoder, params: str) -> list[nn.Parameter]:
    """Freeze what `params` (``all`` / ``head``) excludes and return the parameters to train.

    ``all`` keeps an encoder's own frozen parts frozen (e.g. a pretrained backbone it froze).
    """
    chosen = encoder.head_parameters() if params == "head" else [p for p in encoder.parameters() if p.requires_grad]
    keep = {id(p) for p in chosen}
    for parameter in encoder.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    if not chosen:
        raise ConfigError(f"`train.params`: encoder {type(encoder).__name__} has no "
                          f"{'head ' if params == 'head' else 'trainable '}parameters")
    return chosen


def set_train_mode(encoder: Encoder, head_only: bool) -> None:
    """Train mode; with head-only training the frozen backbone stays in eval mode (norm stats fixed)."""
    encoder.train(not head_only)
    head = getattr(encoder, "head", None)
    if head_only and isinstance(head, nn.Module):
        head.train()


def read_data(config: BindConfig, load_inputs: Any) -> tuple[list[Pair], list[Pair], int]:
    """(train pairs, validation pairs, number of skipped rows) from the recipe's manifest(s)."""
    data = config.data
    options = {"input_column": data.input_column, "skip_bad_rows": data.skip_bad_rows,
               "load_inputs": load_inputs if data.check_inputs else None,
               "progress": config.log.progress and world()[0] == 0}
    main = read_pairs(data.manifest, **options)
    skipped = list(main.skipped)
    if data.val_manifest:
        val_set = read_pairs(data.val_manifest, argument="data.val_manifest", **options)
        skipped += val_set.skipped
        train, val = main.pairs, val_set.pairs
    else:
        train, val = split_pairs(main.pairs, data.val_fraction, config.seed)
    for where, reason in skipped[:20]:
        LOG.warning("skipped %s: %s", where, reason)
    if skipped:
        LOG.warning("skipped %d bad row(s) in total%s", len(skipped), " (first 20 listed)" if len(skipped) > 20 else "")
    if not train:
        raise InputError(f"`data.manifest`: no training rows left after the split ({len(val)} validation rows)")
    return train, val, len(skipped)


@torch.no_grad()
def evaluate(encoder: Encoder, load: Callable[[list[Path]], Any], pairs: list[Pair], anchor_vectors: torch.Tensor,
             config: BindConfig, device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Validation R@1/R@5 both ways (``val_`` prefixed) of `encoder` on `pairs` (inputs read with `load`)."""
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for start in range(0, len(pairs), config.eval.batch_size):
        group = pairs[start:start + config.eval.batch_size]
        batch = load([p.input for p in group])
        with autocast(precision, device):
            chunks.append(F.normalize(encoder(to_device(batch, device)).float(), dim=-1).cpu())
    encoder.train(was_training)
    metrics = paired_recall(torch.cat(chunks), anchor_vectors, [str(p.input) for p in pairs],
                            [f"{p.partner_kind}:{p.partner}" for p in pairs])
    return {f"val_{k}": v for k, v in metrics.items()}


def bind(config: str | Path | Mapping[str, Any] | BindConfig, *, resume: bool = False, overwrite: bool = False,
         stop_after: int | None = None, base_model: BoundModel | None = None) -> BindResult:
    """Bind a modality to the frozen anchor of `config.model` as the recipe `config` says.

    `config` is a recipe file, a mapping or a `BindConfig`. `resume` continues the run in
    `output_dir` from its newest checkpoint (a new or empty folder starts fresh); `overwrite`
    replaces a run there; `stop_after` stops (with a checkpoint, no bundle) after that many
    optimizer steps in this call. `base_model` reuses an already loaded
    ``anybind.load(config.model)`` (moved to the training device). Returns a `BindResult`;
    the bundle is ``<output_dir>/bundle``.
    """
    config = load_bind_config(config)
    if stop_after is not None and stop_after < 1:
        raise InputError(f"`stop_after`: expected a positive number of steps, got {stop_after}")
    device = local_device(resolve_device(config.train.device, "train.device"))
    created_group = join_process_group(device)
    try:
        run = BindingRun(config, device, base_model)
        run.open(resume=resume, overwrite=overwrite)
        return run.train(stop_after)
    finally:
        if created_group:
            dist.destroy_process_group()


class BindingRun:
    """The state of one `bind` call: model, data, optimizer, and the training loop over them."""

    def __init__(self, config: BindConfig, device: torch.device, base_model: BoundModel | None) -> None:
        self.config, self.device = config, device
        self.rank, self.world_size = world()
        train = config.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        if train.batch_size % self.world_size:
            raise ConfigError(f"`train.batch_size` {train.batch_size} must be divisible by the "
                              f"{self.world_size} ranks")
        seed_everything(config.seed + self.rank)
        self.base_config, self.base_dir = resolve_spec(config.model)
        self.model = base_model if base_model is not None else load_model(config.model, device=device)
        self.model.to(device)
        self.identity = self.model.anchor.identity.to_dict()
        entry = ModalityConfig(encoder=config.encoder, encoder_args=dict(config.encoder_args),
                               preprocess=config.preprocess, weights=config.init_weights,
                               templates=config.templates, seed=config.seed)
        bound = build_modality(config.modality, entry, self.model.anchor, None)
        self.encoder, self.modality = bound.encoder.to(device), bound.modality
        self.output_dir = Path(config.output_dir).expanduser()
        self.step = 0
        self.input_cache = self.build_input_cache()
        self.features: torch.Tensor | None = None  # [N, ...] cached backbone outputs of the train rows
        self.precision = "fp32"  # resolved from train.precision in `open`
        self.precision_reason = ""

    def build_input_cache(self) -> InputCache | None:
        """The decode-once cache of loaded + front-ended inputs (None when ``data.cache_inputs`` is off)."""
        data = self.config.data
        enabled = data.cache_inputs if data.cache_inputs is not None else self.modality.deterministic_load
        if not enabled:
            return None
        store = None
        if data.input_cache_disk:
            description = self.cache_description()
            folder = default_store_folder(content_digest(description), data.input_cache_dir)
            store = FeatureStore(folder, description) if self.rank == 0 else None
            barrier()
            if store is None:
                store = FeatureStore(folder)
        return InputCache(self.load_uncached, split=self.modality.split_batch, join=self.modality.join_batches,
                          key_of=FileKeys(), store=store, memory_budget=data.input_cache_memory_mb << 20)

    def cache_description(self) -> dict[str, Any]:
        """What a cached input depends on besides its file content (its digest names the store folder)."""
        import anybind

        preprocess = self.modality.preprocess
        pixels = getattr(self.model.anchor, "image_preprocess", None)
        return {"modality": self.config.modality, "encoder": type(self.encoder).encoder_name,
                "front_end": type(self.encoder).front_end is not Encoder.front_end,
                "encoder_args": to_dict(self.encoder.config),
                "preprocess": to_dict(preprocess) if preprocess is not None else None,
                "load_options": dict(self.config.data.load_options),
                "anchor_pixels": to_dict(pixels) if pixels is not None else None, "anybind": anybind.__version__}

    # -- setup -----------------------------------------------------------------------------
    def open(self, *, resume: bool, overwrite: bool) -> None:
        """Claim the run folder, read the data, cache anchor vectors, build the optimizer, restore."""
        config_dict = bind_config_to_dict(self.config)
        resumed = check_run_folder(self.output_dir, kind=RUN_KIND, config=config_dict, anchor=self.identity,
                                   resume=resume, overwrite=overwrite, differences=math_differences)
        barrier()
        if self.rank == 0:
            start_run_folder(self.output_dir, kind=RUN_KIND, config=config_dict, anchor=self.identity,
                             resumed=resumed)
        barrier()
        self.train_pairs, self.val_pairs, self.skipped = read_data(self.config, self.load_inputs)
        self.partners = [(p.partner_kind, p.partner) for p in self.train_pairs + self.val_pairs]
        if self.input_cache is not None:
            started = time.perf_counter()
            self.input_cache.fill([p.input for p in self.train_pairs + self.val_pairs],
                                  progress=self.config.log.progress and self.rank == 0)
            cache = self.input_cache
            LOG.info("input cache: %d input(s) loaded, %d read from %s, %.0f MB in memory (%.1fs)", cache.loaded,
                     cache.from_store, cache.store.folder if cache.store is not None else "-",
                     cache.memory_bytes / 2**20, time.perf_counter() - started)
        vectors = self.anchor_vectors_of_all_partners()
        self.train_vectors, self.val_vectors = vectors[:len(self.train_pairs)], vectors[len(self.train_pairs):]
        self.build_optimizer()
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", self.config.checkpoint.keep_last)
        self.dataset = MicroBatches([p.input for p in self.train_pairs], self.load_inputs, self.config.train.batch_size,
                                    self.config.seed, self.rank, self.world_size)
        state = self.checkpoints.load_latest() if resumed else None
        if state is not None:
            self.restore(state)
        else:
            self.resolve_precision()
        if self.head_features_enabled():
            self.cache_backbone_features()

    def resolve_precision(self) -> None:
        """Turn ``train.precision`` (``auto``) into fp32/bf16 (timing a step on CPUs with native bf16); log it.

        The probe times a quarter of micro-batch 0 (the ratio, not the absolute time, decides). A head
        trained on cached backbone features stays fp32 under ``auto``: its step is too small to gain.
        """
        if self.config.train.precision == "auto" and self.head_features_enabled():
            self.precision_reason = "only the head trains, on cached backbone features: too small a step to gain"
            self.set_precision("fp32")
            if self.rank == 0:
                LOG.info("precision: fp32 (train.precision auto: %s)", self.precision_reason)
            return
        rows = self.dataset.rows(0)
        rows = rows[:max(2, len(rows) // PROBE_FRACTION)]
        probe = (to_device(self.load_inputs([self.train_pairs[i].input for i in rows]), self.device),
                 self.anchor_vectors_of(rows))

        def time_step(precision: str) -> float:
            return timed(lambda: self.probe_step(precision, probe))

        rng = capture_rng_state()
        batch = probe[0]
        shapes = {k: list(v.shape) for k, v in batch.items()} if isinstance(batch, dict) else list(batch.shape)
        workload = {"encoder": type(self.encoder).encoder_name, "encoder_args": to_dict(self.encoder.config),
                    "modality": self.config.modality, "batch": shapes, "params": self.config.train.params}
        chosen = choose_precision(self.config.train.precision, self.device, time_step, workload)
        restore_rng_state(rng)
        self.precision, self.precision_reason = gather_objects(chosen)[0]  # every rank follows rank 0's timing
        self.set_precision(self.precision)
        if self.rank == 0:
            LOG.info("precision: %s (train.precision %s: %s)", self.precision, self.config.train.precision,
                     self.precision_reason)

    def set_precision(self, precision: str) -> None:
        """Use `precision` in the training objective."""
        self.precision = precision
        objective = self.objective.module if isinstance(self.objective, nn.parallel.DistributedDataParallel) \
            else self.objective
        objective.precision = precision  # type: ignore[assignment]

    def probe_step(self, precision: str, probe: tuple[Any, torch.Tensor]) -> None:
        """One forward + backward of the `probe` (batch, anchor vectors) in `precision`, leaving weights,
        buffers and grads untouched."""
        saved = {k: v.clone() for k, v in self.encoder.state_dict().items()}
        objective = BindingObjective(self.encoder, self.loss, precision)
        batch, vectors = probe
        set_train_mode(self.encoder, self.config.train.params == "head")
        objective(batch, vectors).backward()
        for parameter in self.trainable:
            parameter.grad = None
        self.encoder.load_state_dict(saved)

    def head_features_enabled(self) -> bool:
        """True when only the head trains and the frozen backbone's outputs can be cached."""
        return (self.config.train.params == "head" and self.config.data.cache_features
                and bool(self.encoder.splits_head))

    @torch.no_grad()
    def cache_backbone_features(self) -> None:
        """``[N, ...]`` frozen-backbone outputs of every training row, computed once (backbone in eval mode)."""
        started = time.perf_counter()
        set_train_mode(self.encoder, head_only=True)
        inputs = [p.input for p in self.train_pairs]
        chunks, size = [], self.config.eval.batch_size
        unique = list(dict.fromkeys(inputs))
        for start in range(0, len(unique), size):
            batch = to_device(self.load_inputs(unique[start:start + size]), self.device)
            with autocast(self.precision, self.device):
                chunks.append(self.encoder.backbone_features(batch).float())
        per_input = torch.cat(chunks)
        position = {path: i for i, path in enumerate(unique)}
        self.features = per_input[torch.tensor([position[path] for path in inputs])]
        objective = self.objective.module if isinstance(self.objective, nn.parallel.DistributedDataParallel) \
            else self.objective
        objective.head_only_features = True  # type: ignore[assignment]
        LOG.info("frozen backbone: features of %d input(s) cached (%s each, %.1fs); training the head on them",
                 len(unique), list(per_input.shape[1:]), time.perf_counter() - started)

    def load_uncached(self, paths: list[Path]) -> Any:
        """Modality inputs -> one batch (CPU), with the recipe's load options; through the encoder's
        front end when cached (so the cache holds e.g. log-mels)."""
        batch = self.modality.load(paths, **self.config.data.load_options)
        if self.input_cache is None:
            return batch
        with torch.no_grad():
            return self.encoder.front_end(to_device(batch, torch.device("cpu")))

    def load_inputs(self, paths: list[Path]) -> Any:
        """Like `load_uncached`, through the in-memory cache when ``data.cache_inputs``."""
        return self.input_cache(paths) if self.input_cache is not None else self.load_uncached(paths)

    def anchor_vectors_of_all_partners(self) -> torch.Tensor:
        """``[N, D]`` anchor vectors of every partner (train then val), from the on-disk cache.

        Rank 0 fills the cache; the other ranks read it after a barrier.
        """
        kinds, values = [k for k, _ in self.partners], [v for _, v in self.partners]
        data = self.config.data
        if not data.cache_anchor:
            return embed_partners(self.model, kinds, values)
        anchor = self.model.anchor
        vectors = None
        if self.rank == 0:
            cache = AnchorVectorCache.for_anchor(anchor.identity, data.anchor_cache_dir)
            vectors = cached_anchor_vectors(self.model, cache, kinds, values, verify=data.verify_cached,
                                            progress=self.config.log.progress)
        barrier()
        if vectors is None:
            cache = AnchorVectorCache.for_anchor(anchor.identity, data.anchor_cache_dir)
            vectors = cached_anchor_vectors(self.model, cache, kinds, values, verify=0)
        return vectors

    def build_optimizer(self) -> None:
        """Loss module, AdamW, cosine schedule and (under DDP) the wrapped objective."""
        train = self.config.train
        self.batches_per_epoch = len(self.train_pairs) // train.batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(f"`train.batch_size` {train.batch_size} exceeds the {len(self.train_pairs)} "
                              "training rows")
        self.total_steps = train.steps if train.steps is not None else max(
            1, math.ceil(train.epochs * self.batches_per_epoch / train.grad_accum_steps))  # type: ignore[operator]
        select_trainable(self.encoder, train.params)
        self.loss = ContrastiveLoss(self.config.loss, rank=self.rank, world_size=self.world_size).to(self.device)
        objective = BindingObjective(self.encoder, self.loss, "fp32")
        named = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
        self.trainable = [p for _, p in named]
        self.optimizer = torch.optim.AdamW(adamw_param_groups(named, train.weight_decay), lr=train.lr,
                                           betas=train.betas, eps=train.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(train.warmup_steps, self.total_steps, train.min_lr_ratio))
        self.objective: nn.Module = objective
        if self.world_size > 1:
            self.objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def state(self, rng: list[Any]) -> dict[str, Any]:
        """Everything a resume needs (`rng`: every rank's RNG state)."""
        return {"step": self.step, "encoder": self.encoder.state_dict(), "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng, "anchor": self.identity, "precision": self.precision}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from checkpoint `state`: weights, optimizer, schedule, RNG, step, chosen precision."""
        precision = state.get("precision")
        self.set_precision(precision if precision is not None else self.config.train.precision)
        self.precision_reason = "kept from the checkpoint"
        if self.rank == 0:
            LOG.info("precision: %s (kept from the checkpoint)", self.precision)
        self.encoder.load_state_dict(state["encoder"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        restore_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])
        self.step = int(state["step"])

    def save_checkpoint(self) -> None:
        """Gather every rank's RNG state; rank 0 writes the checkpoint."""
        rng = gather_objects(capture_rng_state())
        if self.rank == 0:
            self.checkpoints.save(self.step, self.state(rng))

    # -- training --------------------------------------------------------------------------
    def micro_batch(self, micro_step: int, loaded: tuple[Any, torch.Tensor] | None = None) -> tuple[Any, torch.Tensor]:
        """This rank's slice of global micro-batch `micro_step`: (modality batch or cached backbone
        features, ``[b, D]`` anchor vectors). `loaded` is the pipeline's (batch, rows) of that step."""
        if self.features is not None:
            rows = self.dataset.rows(micro_step)
            batch: Any = self.features[rows].to(self.device)
        else:
            batch, row_tensor = loaded if loaded is not None else self.dataset[micro_step]
            rows = row_tensor.tolist()
            batch = to_device(batch, self.device)
        return batch, self.anchor_vectors_of(rows)

    def anchor_vectors_of(self, rows: list[int]) -> torch.Tensor:
        """``[b, D]`` anchor vectors of training rows `rows` (cached, or recomputed with ``cache_anchor: false``)."""
        if self.config.data.cache_anchor:
            return self.train_vectors[rows].to(self.device)
        kinds, values = zip(*(self.partners[i] for i in rows))
        return embed_partners(self.model, list(kinds), list(values)).to(self.device)

    def micro_batches(self, last_step: int) -> Iterator[tuple[Any, torch.Tensor]] | None:
        """The pipeline over this call's micro-steps (None with cached backbone features: no loading)."""
        if self.features is not None:
            return None
        accum, data = self.config.train.grad_accum_steps, self.config.data
        cache = self.input_cache
        workers = auto_workers(data.num_workers, cache is not None and cache.all_in_memory)
        LOG.info("input pipeline: %d worker process(es)%s", workers,
                 ", pinned memory" if self.device.type == "cuda" else "")
        return iterate_micro_batches(self.dataset, self.step * accum, last_step * accum, workers=workers,
                                     prefetch=data.prefetch_batches, pin_memory=self.device.type == "cuda")

    def train_step(self, pipeline: Iterator[tuple[Any, torch.Tensor]] | None = None) -> float:
        """One optimizer step over `grad_accum_steps` micro-batches (from `pipeline` when given);
        returns the loss averaged over ranks."""
        accum = self.config.train.grad_accum_steps
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            loaded = next(pipeline) if pipeline is not None else None
            batch, anchor_vectors = self.micro_batch(self.step * accum + micro, loaded)
            sync = micro == accum - 1 or self.world_size == 1
            with contextlib.nullcontext() if sync else self.objective.no_sync():  # type: ignore[operator]
                loss = self.objective(batch, anchor_vectors) / accum
                loss.backward()
            total += loss.detach()
        if self.config.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.loss.clamp_()
        self.step += 1
        return mean_over_ranks(total)

    def validate(self) -> dict[str, float]:
        """Validation metrics (rank 0 computes them; other ranks get {})."""
        metrics: dict[str, float] = {}
        if self.rank == 0 and self.val_pairs:
            metrics = evaluate(self.encoder, self.load_inputs, self.val_pairs, self.val_vectors, self.config,
                               self.device, self.precision)
        barrier()
        return metrics

    def train(self, stop_after: int | None) -> BindResult:
        """Run steps until the end (or `stop_after` steps), logging, evaluating and checkpointing."""
        config = self.config
        last_step = self.total_steps if stop_after is None else min(self.total_steps, self.step + stop_after)
        log = MetricsLog(self.output_dir, METRIC_COLUMNS, self.step, config.log.tensorboard) if self.rank == 0 else None
        window: list[float] = []
        step_seconds: list[float] = []
        train_loss, metrics = float("nan"), {}
        set_train_mode(self.encoder, config.train.params == "head")
        bar = progress_bar(total=self.total_steps, initial=self.step, desc=f"bind {config.modality}", unit="step",
                   disable=not config.log.progress or self.rank != 0)
        pipeline = self.micro_batches(last_step)
        while self.step < last_step:
            started = time.perf_counter()
            window.append(self.train_step(pipeline))
            step_seconds.append(time.perf_counter() - started)
            bar.update(1)
            step = self.step
            evaluate_now = step == self.total_steps or bool(config.eval.every_steps and step % config.eval.every_steps == 0)
            if evaluate_now:
                metrics = self.validate()
            if log is not None and (step % config.log.every_steps == 0 or evaluate_now or step == last_step):
                train_loss = sum(window) / len(window)
                log.write(step, self.metrics_row(train_loss, metrics if evaluate_now else {}))
                bar.set_postfix(loss=f"{train_loss:.4f}", scale=f"{self.loss.logit_scale:.1f}")
                window = []
            if step == last_step or (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0):
                self.save_checkpoint()
        bar.close()
        if window:
            train_loss = sum(window) / len(window)
        if log is not None:
            log.close()
        if not step_seconds and self.step == self.total_steps:  # resumed a finished run: re-evaluate for the bundle
            metrics = self.validate()
        bundle_dir = self.write_bundle(metrics) if self.step == self.total_steps and self.rank == 0 else None
        barrier()
        return BindResult(output_dir=self.output_dir, bundle_dir=bundle_dir, step=self.step,
                          total_steps=self.total_steps, train_loss=train_loss, logit_scale=self.loss.logit_scale,
                          metrics=metrics, train_rows=len(self.train_pairs), val_rows=len(self.val_pairs),
                          skipped_rows=self.skipped, rank=self.rank, step_seconds=step_seconds,
                          steps_per_second=len(step_seconds) / sum(step_seconds) if step_seconds else 0.0)

    def metrics_row(self, train_loss: float, metrics: Mapping[str, float]) -> dict[str, float]:
        """One `metrics.csv` row for the current step."""
        scale = self.loss.logit_scale
        row = {"epoch": self.step * self.config.train.grad_accum_steps / self.batches_per_epoch,
               "lr": self.scheduler.get_last_lr()[0], "train_loss": train_loss, "logit_scale": scale,
               "temperature": 1 / scale}
        row.update({k: v for k, v in metrics.items() if not k.startswith("val_chance")})
        return row

    def write_bundle(self, metrics: Mapping[str, float]) -> Path:
        """Write ``<output_dir>/bundle``: the base model's anchor and modalities plus the trained one."""
        config = self.config
        entries: dict[str, Any] = {name: (entry, None) for name, entry in
                                   base_modality_entries(self.base_config, self.base_dir).items()}
        preprocess = self.modality.preprocess
        entries[config.modality] = ({
            "encoder": type(self.encoder).encoder_name,
            "encoder_args": to_dict(self.encoder.config),
            "preprocess": to_dict(preprocess) if preprocess is not None else None,
            "logit_scale": self.loss.logit_scale,
            "templates": config.templates,
            "seed": config.seed,
        }, {k: v.float() if v.is_floating_point() else v for k, v in self.encoder.state_dict().items()})
        base_name = self.base_config.name or Path(config.model).name
        info = {"trainer": "anybind train", "modality": config.modality, "anchor_identity": dict(self.identity),
                "base_model": config.model, "steps": self.step, "metrics": dict(metrics),
                "precision": {"used": self.precision, "why": self.precision_reason},
                "data": {"train_rows": len(self.train_pairs), "val_rows": len(self.val_pairs),
                         "skipped_rows": self.skipped},
                "recipe": bind_config_to_dict(config),
                "licenses": self.model.weights_licenses() + [self.model.trained_weights_license(
                    f"weights/{config.modality}.safetensors", config.modality)]}
        return write_bundle(self.output_dir / BUNDLE_FOLDER,
                            anchor_spec=portable_anchor_spec(self.base_config.anchor, self.base_dir),
                            modalities=entries, name=config.name or f"{base_name}+{config.modality}", info=info)
