"""`TrainingRun`: the loop every anybind trainer shares, whatever trains and whatever it is bound to.

A run trains one module (a modality encoder, an anchor's image tower) so its unit-norm features
match frozen target vectors (anchor vectors of partners, frozen text vectors of captions) with a
`ContrastiveLoss`. The base owns what does not depend on that choice: the run folder guard rails,
AdamW with CLIP-style groups and a cosine schedule with warmup, the precision choice
(``precision: auto``), the `DataLoader` pipeline over `MicroBatches`, the optimizer step with
gradient accumulation, clipping and DDP, checkpoints with RNG states (``--resume`` ends exactly
where an uninterrupted run does), the metrics log and validation hooks.

A subclass says what differs: `module` (what trains), `open` (read data, build `dataset`, then
call `prepare`), `micro_batch` (inputs and their ``[b, D]`` targets of a micro-step, with any
per-step augmentation), `probe_batch`, `validate`, `metrics_row` and `write_bundle`.
"""

from __future__ import annotations

import abc

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F

from anybind.errors import ConfigError, InputError
from anybind.progress import progress_bar
from anybind.train.checkpoints import CheckpointManager, capture_rng_state, restore_rng_state
from anybind.train.config import CheckpointConfig, EvalConfig, LogConfig, LossConfig, TrainConfig
from anybind.train.distributed import (barrier, gather_objects, join_process_group, local_device, mean_over_ranks,
                                       world)
from anybind.train.input_cache import FeatureStore, InputCache, content_digest, default_store_folder
from anybind.train.losses import ContrastiveLoss
from anybind.train.optim import adamw_param_groups, cosine_with_warmup
from anybind.train.pipeline import MicroBatches, auto_workers, iterate_micro_batches
from anybind.train.precision import autocast, choose_precision, timed
from anybind.train.run_dir import MetricsLog, check_run_folder, start_run_folder

LOG = logging.getLogger("anybind.train")
PROBE_FRACTION = 4  # `precision: auto` times steps on 1/4 of a micro-batch


@dataclass(frozen=True)
class RunSettings:
    """What the shared loop reads from a recipe (each trainer maps its own recipe onto it)."""

    output_dir: Path  # run folder: run.json, checkpoints/, metrics.csv, the bundle
    seed: int  # init, data order and dropout
    train: TrainConfig
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    num_workers: int | None = None  # DataLoader worker processes (None: `auto_workers`)
    prefetch_batches: int = 2  # batches each worker loads ahead


@dataclass
class LoopResult:
    """What `TrainingRun.train` produced."""

    bundle_dir: Path | None  # None when stopped early
    step: int  # optimizer steps completed in total
    total_steps: int
    train_loss: float  # mean loss of the last logged window
    logit_scale: float
    metrics: dict[str, float] = field(default_factory=dict)  # last validation metrics
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step in this call
    step_losses: list[float] = field(default_factory=list)  # loss of each optimizer step in this call

    @property
    def steps_per_second(self) -> float:
        """Optimizer steps per second of training work in this call."""
        return len(self.step_seconds) / sum(self.step_seconds) if self.step_seconds else 0.0


class ContrastiveObjective(nn.Module):
    """The trained module + contrastive loss as one module, so DDP syncs the logit scale's gradient too."""

    def __init__(self, encoder: nn.Module, loss: ContrastiveLoss, precision: str, head_only_features: bool = False
                 ) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.precision = precision
        self.head_only_features = head_only_features  # batches are an encoder's cached `backbone_features`

    def forward(self, batch: Any, targets: torch.Tensor) -> torch.Tensor:
        """Loss of `batch` (or of cached backbone features) against its ``[B, D]`` frozen target vectors."""
        with autocast(self.precision, targets.device):
            features = self.encoder.forward_head(batch) if self.head_only_features else self.encoder(batch)
        features = F.normalize(features.float(), dim=-1)
        return self.loss(features, targets)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def training_process(device: str | None, stop_after: int | None = None) -> Iterator[torch.device]:
    """This rank's training device (the recipe's ``train.device`` resolved; ``cuda:LOCAL_RANK`` under
    torchrun), inside torchrun's process group (joined here and left on exit unless already joined).
    Raises `InputError` for a `stop_after` below 1."""
    from anybind.model import resolve_device

    if stop_after is not None and stop_after < 1:
        raise InputError(f"`stop_after`: expected a positive number of steps, got {stop_after!r}")
    resolved = local_device(resolve_device(device, "train.device"))
    created_group = join_process_group(resolved)
    try:
        yield resolved
    finally:
        if created_group:
            dist.destroy_process_group()


def open_input_cache(load: Callable[[list[Any]], Any], *, split: Callable[..., Any], join: Callable[..., Any],
                     key_of: Callable[[Any], Any], description: Mapping[str, Any] | None,
                     folder: str | None = None, memory_mb: int = 2048) -> InputCache:
    """A decode-once `InputCache` over `load`; with a `description` (what a cached input depends on
    besides its content) also backed by the on-disk store named by its digest (rank 0 creates it)."""
    store = None
    if description is not None:
        where = default_store_folder(content_digest(dict(description)), folder)
        store = FeatureStore(where, dict(description)) if world()[0] == 0 else None
        barrier()
        if store is None:
            store = FeatureStore(where)
    return InputCache(load, split=split, join=join, key_of=key_of, store=store, memory_budget=memory_mb << 20)


class TrainingRun(abc.ABC):
    """One training run of `module` against frozen targets (see the module docstring)."""

    kind: ClassVar[str]  # run.json `kind`: a run folder of another kind is never resumed
    checkpoint_key: ClassVar[str] = "module"  # key of the trained module's state dict in a checkpoint
    metric_columns: ClassVar[list[str]]  # metrics.csv columns besides `step`
    progress_label: ClassVar[str] = "train"

    dataset: MicroBatches
    module: nn.Module

    def __init__(self, settings: RunSettings, device: torch.device) -> None:
        self.settings, self.device = settings, device
        self.rank, self.world_size = world()
        train = settings.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        if train.batch_size % self.world_size:
            raise ConfigError(f"`train.batch_size` {train.batch_size} must be divisible by the "
                              f"{self.world_size} ranks")
        seed_everything(settings.seed + self.rank)
        self.output_dir = Path(settings.output_dir).expanduser()
        self.step = 0
        self.precision = "fp32"  # resolved from train.precision in `prepare`
        self.precision_reason = ""
        self.head_only_features = False

    # -- hooks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def micro_batch(self, micro_step: int, loaded: tuple[Any, torch.Tensor] | None = None) -> tuple[Any, torch.Tensor]:
        """This rank's (batch on the device, ``[b, D]`` targets) of global micro-batch `micro_step`;
        `loaded` is the pipeline's (batch, rows) of that step (None: load it now)."""

    @abc.abstractmethod
    def probe_batch(self) -> tuple[Any, torch.Tensor]:
        """A small (batch, targets) on the device that `precision: auto` times steps on."""

    @abc.abstractmethod
    def probe_workload(self, batch: Any) -> dict[str, Any]:
        """What the precision decision depends on besides the device (it is remembered per workload)."""

    def set_train_mode(self) -> None:
        """Put the trained module in training mode (subclasses keep frozen parts in eval mode)."""
        self.module.train()

    def validate(self) -> dict[str, float]:
        """Validation metrics of the current weights (rank 0; other ranks return {})."""
        return {}

    def metrics_row(self, train_loss: float, metrics: Mapping[str, float]) -> dict[str, float]:
        """One `metrics.csv` row for the current step."""
        scale = self.loss.logit_scale
        row = {"epoch": self.step * self.settings.train.grad_accum_steps / self.batches_per_epoch,
               "lr": self.scheduler.get_last_lr()[0], "train_loss": train_loss, "logit_scale": scale,
               "temperature": 1 / scale}
        row.update({k: v for k, v in metrics.items() if not k.startswith("val_chance")})
        return row

    def write_bundle(self, metrics: Mapping[str, float]) -> Path | None:
        """Write the run's result (rank 0, once the last step is done)."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """What a subclass adds to every checkpoint."""
        return {}

    # -- setup -----------------------------------------------------------------------------
    def claim_folder(self, config: Mapping[str, Any], anchor: Mapping[str, Any], *, resume: bool, overwrite: bool,
                     differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]) -> bool:
        """Check and (rank 0) claim the run folder for `config` against `anchor`; True when resuming."""
        resumed = check_run_folder(self.output_dir, kind=self.kind, config=config, anchor=anchor,
                                   resume=resume, overwrite=overwrite, differences=differences)
        barrier()
        if self.rank == 0:
            start_run_folder(self.output_dir, kind=self.kind, config=config, anchor=anchor, resumed=resumed)
        barrier()
        return resumed

    def prepare(self, resumed: bool, rows: int) -> None:
        """After `dataset` is set: optimizer and schedule for `rows` training rows, then the newest
        checkpoint restored (when `resumed`) or the precision chosen."""
        self.build_optimizer(rows)
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", self.settings.checkpoint.keep_last)
        state = self.checkpoints.load_latest() if resumed else None
        if state is not None:
            self.restore(state)
        else:
            self.resolve_precision()

    def build_optimizer(self, rows: int) -> None:
        """Loss module, AdamW, cosine schedule and (under DDP) the wrapped objective."""
        train = self.settings.train
        self.batches_per_epoch = rows // train.batch_size
        if self.batches_per_epoch < 1:
            raise ConfigError(f"`train.batch_size` {train.batch_size} exceeds the {rows} training rows")
        self.total_steps = train.steps if train.steps is not None else max(
            1, math.ceil(train.epochs * self.batches_per_epoch / train.grad_accum_steps))  # type: ignore[operator]
        self.loss = ContrastiveLoss(self.settings.loss, rank=self.rank, world_size=self.world_size).to(self.device)
        objective = ContrastiveObjective(self.module, self.loss, "fp32", self.head_only_features)
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

    @property
    def plain_objective(self) -> ContrastiveObjective:
        """The objective without its DDP wrapper."""
        objective = self.objective.module if isinstance(self.objective, nn.parallel.DistributedDataParallel) \
            else self.objective
        return objective  # type: ignore[return-value]

    def resolve_precision(self) -> None:
        """Turn ``train.precision`` (``auto``) into fp32/bf16 (timing steps of `probe_batch` on CPUs with
        native bf16; the ratio, not the absolute time, decides); every rank follows rank 0; logged."""
        requested = self.settings.train.precision
        probe = self.probe_batch()
        rng = capture_rng_state()
        chosen = choose_precision(requested, self.device, lambda p: timed(lambda: self.probe_step(p, probe)),
                                  self.probe_workload(probe[0]))
        restore_rng_state(rng)
        self.precision, self.precision_reason = gather_objects(chosen)[0]
        self.set_precision(self.precision)
        if self.rank == 0:
            LOG.info("precision: %s (train.precision %s: %s)", self.precision, requested, self.precision_reason)

    def set_precision(self, precision: str) -> None:
        """Use `precision` in the training objective."""
        self.precision = precision
        self.plain_objective.precision = precision

    def probe_step(self, precision: str, probe: tuple[Any, torch.Tensor]) -> None:
        """One forward + backward of the `probe` (batch, targets) in `precision`, leaving weights,
        buffers and grads untouched."""
        saved = {k: v.clone() for k, v in self.module.state_dict().items()}
        objective = ContrastiveObjective(self.module, self.loss, precision, self.head_only_features)
        self.set_train_mode()
        objective(*probe).backward()
        for parameter in self.trainable:
            parameter.grad = None
        self.module.load_state_dict(saved)

    # -- checkpoints -----------------------------------------------------------------------
    def state(self, rng: list[Any]) -> dict[str, Any]:
        """Everything a resume needs (`rng`: every rank's RNG state)."""
        return {"step": self.step, self.checkpoint_key: self.module.state_dict(), "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng, "precision": self.precision, **self.extra_state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from checkpoint `state`: weights, optimizer, schedule, RNG, step, chosen precision."""
        precision = state.get("precision")
        self.set_precision(precision if precision is not None else self.settings.train.precision)
        self.precision_reason = "kept from the checkpoint"
        if self.rank == 0:
            LOG.info("precision: %s (kept from the checkpoint)", self.precision)
        self.module.load_state_dict(state[self.checkpoint_key])
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
    def micro_batches(self, last_step: int, cached_in_memory: bool) -> Iterator[tuple[Any, torch.Tensor]]:
        """The `DataLoader` pipeline over this call's micro-steps (workers, pinned memory, prefetch)."""
        accum = self.settings.train.grad_accum_steps
        workers = auto_workers(self.settings.num_workers, cached_in_memory)
        LOG.info("input pipeline: %d worker process(es)%s", workers,
                 ", pinned memory" if self.device.type == "cuda" else "")
        return iterate_micro_batches(self.dataset, self.step * accum, last_step * accum, workers=workers,
                                     prefetch=self.settings.prefetch_batches, pin_memory=self.device.type == "cuda")

    def pipeline(self, last_step: int) -> Iterator[tuple[Any, torch.Tensor]] | None:
        """The micro-batch source of `train` (None: `micro_batch` loads each step itself)."""
        return self.micro_batches(last_step, cached_in_memory=False)

    def train_step(self, pipeline: Iterator[tuple[Any, torch.Tensor]] | None = None) -> float:
        """One optimizer step over `grad_accum_steps` micro-batches (from `pipeline` when given);
        returns the loss averaged over ranks."""
        train = self.settings.train
        accum = train.grad_accum_steps
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            loaded = next(pipeline) if pipeline is not None else None
            batch, targets = self.micro_batch(self.step * accum + micro, loaded)
            sync = micro == accum - 1 or self.world_size == 1
            with contextlib.nullcontext() if sync else self.objective.no_sync():  # type: ignore[operator]
                loss = self.objective(batch, targets) / accum
                loss.backward()
            total += loss.detach()
        if train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.loss.clamp_()
        self.step += 1
        return mean_over_ranks(total)

    def train(self, stop_after: int | None) -> LoopResult:
        """Run steps until the end (or `stop_after` steps), logging, evaluating and checkpointing;
        the bundle is written when the last step is done."""
        settings = self.settings
        last_step = self.total_steps if stop_after is None else min(self.total_steps, self.step + stop_after)
        log = (MetricsLog(self.output_dir, self.metric_columns, self.step, settings.log.tensorboard)
               if self.rank == 0 else None)
        window: list[float] = []
        result = LoopResult(bundle_dir=None, step=self.step, total_steps=self.total_steps,
                            train_loss=float("nan"), logit_scale=self.loss.logit_scale)
        self.set_train_mode()
        bar = progress_bar(total=self.total_steps, initial=self.step, desc=self.progress_label, unit="step",
                           disable=not settings.log.progress or self.rank != 0)
        try:
            pipeline = self.pipeline(last_step)
            while self.step < last_step:
                started = time.perf_counter()
                window.append(self.train_step(pipeline))
                result.step_seconds.append(time.perf_counter() - started)
                result.step_losses.append(window[-1])
                bar.update(1)
                step = self.step
                every = settings.eval.every_steps
                evaluate_now = step == self.total_steps or bool(every and step % every == 0)
                if evaluate_now:
                    result.metrics = self.validate()
                    self.set_train_mode()
                if log is not None and (step % settings.log.every_steps == 0 or evaluate_now or step == last_step):
                    result.train_loss = sum(window) / len(window)
                    log.write(step, self.metrics_row(result.train_loss, result.metrics if evaluate_now else {}))
                    bar.set_postfix(loss=f"{result.train_loss:.4f}", scale=f"{self.loss.logit_scale:.1f}")
                    window = []
                every = settings.checkpoint.every_steps
                if step == last_step or (every and step % every == 0):
                    self.save_checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()
        if window:
            result.train_loss = sum(window) / len(window)
        if not result.step_seconds and self.step == self.total_steps:  # resumed a finished run: re-evaluate
            result.metrics = self.validate()
        if self.step == self.total_steps and self.rank == 0:
            result.bundle_dir = self.write_bundle(result.metrics)
        barrier()
        result.step, result.logit_scale = self.step, self.loss.logit_scale
        return result
