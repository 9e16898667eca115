"""`bind`: train a modality's encoder against the frozen anchor of a base model.

One call does the whole job (`anybind train RECIPE.yaml` is a thin wrapper):

1. read and validate the manifest(s), split train/val;
2. compute the anchor vectors of every partner once (cached on disk, see `anchor_cache`);
3. train encoder (+ learnable logit scale) with symmetric InfoNCE or SigLIP, AdamW, cosine
   schedule with warmup, gradient accumulation, clipping, optional bf16 autocast;
   under ``torchrun`` each rank takes a slice of every global batch and features are
   gathered with gradients, so the loss is the single-process loss of the global batch;
4. log metrics (CSV + TensorBoard), evaluate R@1/R@5 both ways, checkpoint every N steps;
5. write ``<output_dir>/bundle``: ``anybind.load(bundle).embed(modality, ...)`` works at once.

The data order is a pure function of (seed, step), so `--resume` from a checkpoint (model,
optimizer, scheduler, RNG states, step) ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from anybind.config import to_dict
from anybind.errors import ConfigError, InputError
from anybind.model import BoundModel, ModalityConfig, _to_device, build_modality, default_device, resolve_spec
from anybind.model import load as load_model
from anybind.modality import Encoder
from anybind.train.anchor_cache import AnchorVectorCache, cached_anchor_vectors, embed_partners, partner_key
from anybind.train.bundle import base_modality_entries, portable_anchor_spec, write_bundle
from anybind.train.checkpoints import CheckpointManager, capture_rng_state, restore_rng_state
from anybind.train.config import BindConfig, bind_config_to_dict, load_bind_config, math_differences
from anybind.train.evaluation import paired_recall
from anybind.train.losses import ContrastiveLoss, world
from anybind.train.manifest import Pair, read_pairs, split_pairs
from anybind.train.run_dir import MetricsLog, check_run_folder, start_run_folder

LOG = logging.getLogger("anybind.train")
RUN_KIND = "bind"
BUNDLE_FOLDER = "bundle"
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


class BindingObjective(nn.Module):
    """Encoder + contrastive loss as one module, so DDP syncs the logit scale's gradient too."""

    def __init__(self, encoder: Encoder, loss: ContrastiveLoss, precision: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.precision = precision

    def forward(self, batch: Any, anchor_vectors: torch.Tensor) -> torch.Tensor:
        """Loss of a modality `batch` against its ``[B, D]`` unit-norm anchor vectors."""
        with autocast(self.precision, anchor_vectors.device):
            features = self.encoder(batch)
        features = F.normalize(features.float(), dim=-1)
        return self.loss(features, anchor_vectors)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on `device` when `precision` is ``"bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float) -> Any:
    """LR multiplier of step s: linear warmup to 1 over `warmup_steps`, then cosine to `min_ratio`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def adamw_param_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on >= 2-D weights; none on biases, norms and scalars (as in CLIP)."""
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def batch_rows(micro_step: int, rows: int, batch_size: int, seed: int) -> torch.Tensor:
    """Row indices of global micro-batch `micro_step`: a seeded shuffle per epoch, last partial batch dropped."""
    per_epoch = rows // batch_size
    epoch, index = divmod(micro_step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(rows, generator=generator)
    return order[index * batch_size:(index + 1) * batch_size]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _setup_distributed(device: torch.device) -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); True if we created it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _mean_over_ranks(value: torch.Tensor) -> float:
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def _train_mode(encoder: Encoder, head_only: bool) -> None:
    """Train mode; with head-only training the frozen backbone stays in eval mode (norm stats fixed)."""
    encoder.train(not head_only)
    head = getattr(encoder, "head", None)
    if head_only and isinstance(head, nn.Module):
        head.train()


def _read_data(config: BindConfig, load_inputs: Any) -> tuple[list[Pair], list[Pair], int]:
    data = config.data
    options = {"input_column": data.input_column, "skip_bad_rows": data.skip_bad_rows, "load_inputs": load_inputs}
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
def evaluate(encoder: Encoder, modality: Any, pairs: list[Pair], anchor_vectors: torch.Tensor,
             config: BindConfig, device: torch.device) -> dict[str, float]:
    """Validation R@1/R@5 both ways (``val_`` prefixed) of `encoder` on `pairs`."""
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for start in range(0, len(pairs), config.eval.batch_size):
        group = pairs[start:start + config.eval.batch_size]
        batch = modality.load([p.input for p in group], **config.data.load_options)
        with autocast(config.train.precision, device):
            chunks.append(F.normalize(encoder(_to_device(batch, device)).float(), dim=-1).cpu())
    encoder.train(was_training)
    metrics = paired_recall(torch.cat(chunks), anchor_vectors, [str(p.input) for p in pairs],
                            [f"{p.partner_kind}:{p.partner}" for p in pairs])
    return {f"val_{k}": v for k, v in metrics.items()}


def bind(config: str | Path | Mapping[str, Any] | BindConfig, *, resume: bool = False, overwrite: bool = False,
         stop_after: int | None = None, base_model: BoundModel | None = None) -> BindResult:
    """Bind a modality to the frozen anchor of `config.model` as the recipe `config` says.

    `config` is a recipe file, a mapping or a `BindConfig`. `resume` continues the run in
    `output_dir` from its newest checkpoint; `overwrite` replaces a run there; `stop_after`
    stops (with a checkpoint, no bundle) after that many optimizer steps in this call.
    `base_model` reuses an already loaded ``anybind.load(config.model)`` (on CPU or the
    training device). Returns a `BindResult`; the bundle is ``<output_dir>/bundle``.
    """
    config = load_bind_config(config)
    if stop_after is not None and stop_after < 1:
        raise InputError(f"`stop_after`: expected a positive number of steps, got {stop_after}")
    train_cfg = config.train
    device = torch.device(train_cfg.device) if train_cfg.device else default_device()
    created_group = _setup_distributed(device)
    rank, world_size = world()
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        return _bind(config, device, rank, world_size, resume, overwrite, stop_after, base_model)
    finally:
        if created_group:
            dist.destroy_process_group()


def _bind(config: BindConfig, device: torch.device, rank: int, world_size: int, resume: bool, overwrite: bool,
          stop_after: int | None, base_model: BoundModel | None) -> BindResult:
    train_cfg = config.train
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    if train_cfg.batch_size % world_size:
        raise ConfigError(f"`train.batch_size` {train_cfg.batch_size} must be divisible by the {world_size} ranks")
    seed_everything(config.seed + rank)

    base_config, base_dir = resolve_spec(config.model)
    model = base_model if base_model is not None else load_model(config.model, device=device)
    model.to(device)
    anchor = model.anchor
    identity = anchor.identity.to_dict()
    entry = ModalityConfig(encoder=config.encoder, encoder_args=dict(config.encoder_args),
                           preprocess=config.preprocess, weights=config.init_weights, templates=config.templates,
                           seed=config.seed)
    bound = build_modality(config.modality, entry, anchor, None)
    encoder, modality = bound.encoder.to(device), bound.modality

    output_dir = Path(config.output_dir).expanduser()
    config_dict = bind_config_to_dict(config)
    resumed = check_run_folder(output_dir, kind=RUN_KIND, config=config_dict, anchor=identity, resume=resume,
                               overwrite=overwrite, differences=math_differences)
    _barrier()
    if rank == 0:
        start_run_folder(output_dir, kind=RUN_KIND, config=config_dict, anchor=identity, resumed=resumed)
    _barrier()

    def load_inputs(paths: list[Path]) -> Any:
        return modality.load(paths, **config.data.load_options)

    train_pairs, val_pairs, skipped = _read_data(config, load_inputs)
    all_pairs = train_pairs + val_pairs
    kinds, values = [p.partner_kind for p in all_pairs], [p.partner for p in all_pairs]
    if config.data.cache_anchor:
        cache = AnchorVectorCache.for_anchor(anchor.identity, config.data.anchor_cache_dir)
        if rank == 0:
            all_vectors = cached_anchor_vectors(model, cache, kinds, values, verify=config.data.verify_cached,
                                                progress=config.log.progress)
        _barrier()
        if rank != 0:
            cache = AnchorVectorCache.for_anchor(anchor.identity, config.data.anchor_cache_dir)
            all_vectors = cached_anchor_vectors(model, cache, kinds, values, verify=0)
    else:
        all_vectors = embed_partners(model, kinds, values)
    train_vectors, val_vectors = all_vectors[:len(train_pairs)], all_vectors[len(train_pairs):]

    batch_size, accum = train_cfg.batch_size, train_cfg.grad_accum_steps
    per_epoch = len(train_pairs) // batch_size
    if per_epoch < 1:
        raise ConfigError(f"`train.batch_size` {batch_size} exceeds the {len(train_pairs)} training rows")
    total_steps = train_cfg.steps if train_cfg.steps is not None else max(
        1, math.ceil(train_cfg.epochs * per_epoch / accum))  # type: ignore[operator]

    head_only = train_cfg.params == "head"
    trainable = {id(p) for p in (encoder.head_parameters() if head_only else encoder.parameters())}
    if not trainable:
        raise ConfigError(f"`train.params`: encoder {type(encoder).__name__} has no "
                          f"{'head ' if head_only else ''}parameters to train")
    for parameter in encoder.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    loss_module = ContrastiveLoss(config.loss, rank=rank, world_size=world_size).to(device)
    objective: nn.Module = BindingObjective(encoder, loss_module, train_cfg.precision)
    named = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(adamw_param_groups(named, train_cfg.weight_decay), lr=train_cfg.lr,
                                  betas=train_cfg.betas, eps=train_cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(train_cfg.warmup_steps, total_steps, train_cfg.min_lr_ratio))
    if world_size > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    checkpoints = CheckpointManager(output_dir / "checkpoints", config.checkpoint.keep_last)
    step = 0
    if resumed:
        state = checkpoints.load_latest()
        if state is not None:
            encoder.load_state_dict(state["encoder"])
            loss_module.load_state_dict(state["loss"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng_states = state["rng"]
            restore_rng_state(rng_states[rank] if rank < len(rng_states) else rng_states[0])
            step = int(state["step"])
    log = MetricsLog(output_dir, METRIC_COLUMNS, step, config.log.tensorboard) if rank == 0 else None

    def save_checkpoint() -> None:
        rng = [capture_rng_state()]
        if world_size > 1:
            rng = [None] * world_size  # type: ignore[list-item]
            dist.all_gather_object(rng, capture_rng_state())
        if rank == 0:
            checkpoints.save(step, {"step": step, "encoder": encoder.state_dict(), "loss": loss_module.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": rng, "anchor": identity})

    def validate() -> dict[str, float]:
        metrics: dict[str, float] = {}
        if rank == 0 and val_pairs:
            metrics = evaluate(encoder, modality, val_pairs, val_vectors, config, device)
        _barrier()
        return metrics

    per_rank = batch_size // world_size
    last_step = total_steps if stop_after is None else min(total_steps, step + stop_after)
    window: list[float] = []
    train_loss, metrics, work_seconds, steps_done = float("nan"), {}, 0.0, 0
    _train_mode(encoder, head_only)
    bar = tqdm(total=total_steps, initial=step, desc=f"bind {config.modality}", unit="step",
               disable=not config.log.progress or rank != 0)
    while step < last_step:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(accum):
            rows = batch_rows(step * accum + micro, len(train_pairs), batch_size, config.seed)
            rows = rows[rank * per_rank:(rank + 1) * per_rank].tolist()
            batch = _to_device(modality.load([train_pairs[i].input for i in rows], **config.data.load_options), device)
            if config.data.cache_anchor:
                anchor_vectors = train_vectors[rows].to(device)
            else:
                anchor_vectors = embed_partners(model, [kinds[i] for i in rows], [values[i] for i in rows]).to(device)
            sync = micro == accum - 1 or world_size == 1
            with contextlib.nullcontext() if sync else objective.no_sync():  # type: ignore[operator]
                loss = objective(batch, anchor_vectors) / accum
                loss.backward()
            step_loss += loss.detach()
        if train_cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in named], train_cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        loss_module.clamp_()
        step += 1
        steps_done += 1
        window.append(_mean_over_ranks(step_loss))
        work_seconds += time.perf_counter() - started
        bar.update(1)
        evaluate_now = step == total_steps or (config.eval.every_steps and step % config.eval.every_steps == 0)
        if evaluate_now:
            metrics = validate()
        if log is not None and (step % config.log.every_steps == 0 or evaluate_now or step == last_step):
            train_loss = sum(window) / len(window)
            row = {"epoch": step * accum / per_epoch, "lr": scheduler.get_last_lr()[0], "train_loss": train_loss,
                   "logit_scale": loss_module.logit_scale, "temperature": 1 / loss_module.logit_scale}
            row.update({k: v for k, v in metrics.items() if evaluate_now and not k.startswith("val_chance")})
            log.write(step, row)
            bar.set_postfix(loss=f"{train_loss:.4f}", scale=f"{loss_module.logit_scale:.1f}")
            window = []
        if step == last_step or (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0):
            save_checkpoint()
    bar.close()
    if steps_done == 0 and step == total_steps:  # resumed a finished run: re-evaluate for the bundle
        metrics = validate()
    if window:
        train_loss = sum(window) / len(window)
    if log is not None:
        log.close()

    bundle_dir = None
    if step == total_steps and rank == 0:
        bundle_dir = _write_result_bundle(config, base_config, base_dir, encoder, modality,
                                          loss_module.logit_scale, identity, metrics, step,
                                          (len(train_pairs), len(val_pairs), skipped))
    _barrier()
    return BindResult(output_dir=output_dir, bundle_dir=bundle_dir if rank == 0 else None, step=step,
                      total_steps=total_steps, train_loss=train_loss, logit_scale=loss_module.logit_scale,
                      metrics=metrics, train_rows=len(train_pairs), val_rows=len(val_pairs), skipped_rows=skipped,
                      steps_per_second=steps_done / work_seconds if work_seconds else 0.0)


def _write_result_bundle(config: BindConfig, base_config: Any, base_dir: Path | None,
                         encoder: Encoder, modality: Any, logit_scale: float, identity: Mapping[str, Any],
                         metrics: Mapping[str, float], step: int, rows: tuple[int, int, int]) -> Path:
    entries: dict[str, Any] = {name: (entry, None) for name, entry in base_modality_entries(base_config, base_dir).items()}
    preprocess = modality.preprocess
    entries[config.modality] = ({
        "encoder": type(encoder).encoder_name,
        "encoder_args": to_dict(encoder.config),
        "preprocess": to_dict(preprocess) if preprocess is not None else None,
        "logit_scale": logit_scale,
        "templates": config.templates,
        "seed": config.seed,
    }, {k: v.float() if v.is_floating_point() else v for k, v in encoder.state_dict().items()})
    base_name = base_config.name or Path(config.model).name
    info = {"trainer": "anybind train", "modality": config.modality, "anchor_identity": dict(identity),
            "base_model": config.model, "steps": step, "metrics": dict(metrics),
            "data": {"train_rows": rows[0], "val_rows": rows[1], "skipped_rows": rows[2]},
            "recipe": bind_config_to_dict(config)}
    return write_bundle(Path(config.output_dir).expanduser() / BUNDLE_FOLDER,
                        anchor_spec=portable_anchor_spec(base_config.anchor, base_dir), modalities=entries,
                        name=config.name or f"{base_name}+{config.modality}", info=info)
