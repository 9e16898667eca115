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

Steps 3 and 4 are the loop every trainer shares (`anybind.train.run.TrainingRun`); `BindingRun`
says what binding adds: the modality encoder, its inputs and the anchor vectors of the partners.

The data order is a pure function of (seed, step), so `--resume` from a checkpoint (model,
optimizer, scheduler, RNG states, step) ends exactly where an uninterrupted run would.

Notes: `batch_size` is the global contrastive batch; with `grad_accum_steps` > 1 the
negatives of a micro-step are that micro-step's rows only. DDP matches one process exactly for
encoders without batch statistics (BatchNorm layers see each rank's slice; DDP broadcasts
rank 0's running stats). Anchor vectors of all partners are held in memory (N x D float32).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anybind.config import to_dict
from anybind.errors import ConfigError, InputError
from anybind.model import BoundModel, ModalityConfig, to_device, build_modality, resolve_spec
from anybind.model import load as load_model
from anybind.modality import Encoder
from anybind.train.anchor_cache import AnchorVectorCache, cached_anchor_vectors, embed_partners
from anybind.train.bundle import base_modality_entries, portable_anchor_spec, write_bundle
from anybind.train.config import BindConfig, bind_config_to_dict, load_bind_config, math_differences
from anybind.train.distributed import barrier, world
from anybind.train.evaluation import paired_recall
from anybind.train.input_cache import FileKeys, InputCache
from anybind.train.manifest import Pair, read_pairs, split_pairs
from anybind.train.pipeline import MicroBatches, batch_rows
from anybind.train.precision import autocast
from anybind.train.run import (PROBE_FRACTION, ContrastiveObjective, RunSettings, TrainingRun, open_input_cache,
                               training_process)

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
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step in this call
    rank: int = 0  # this process's DDP rank (only rank 0 writes files and evaluates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


__all__ = ["BindResult", "BindingRun", "ContrastiveObjective", "autocast", "batch_rows", "bind", "evaluate"]


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
    with training_process(config.train.device, stop_after) as device:
        run = BindingRun(config, device, base_model)
        run.open(resume=resume, overwrite=overwrite)
        return run.fit(stop_after)


def binding_settings(config: BindConfig) -> RunSettings:
    """The shared loop's settings of a binding recipe."""
    return RunSettings(output_dir=Path(config.output_dir).expanduser(), seed=config.seed, train=config.train,
                       loss=config.loss, eval=config.eval, checkpoint=config.checkpoint, log=config.log,
                       num_workers=config.data.num_workers, prefetch_batches=config.data.prefetch_batches)


def front_end_args(encoder: Encoder) -> dict[str, Any]:
    """The encoder args its front end depends on (`Encoder.front_end_args`; all of them by default,
    none for an encoder without a front end: its cached inputs are the modality loader's output)."""
    if type(encoder).front_end is Encoder.front_end:
        return {}
    args = to_dict(encoder.config)
    names = type(encoder).front_end_args
    return args if names is None else {name: args[name] for name in names if name in args}


class BindingRun(TrainingRun):
    """One `bind` call: a modality encoder trained against the anchor vectors of its partners."""

    kind = RUN_KIND
    checkpoint_key = "encoder"
    metric_columns = METRIC_COLUMNS

    def __init__(self, config: BindConfig, device: torch.device, base_model: BoundModel | None) -> None:
        super().__init__(binding_settings(config), device)
        self.config = config
        self.progress_label = f"bind {config.modality}"
        self.base_config, self.base_dir = resolve_spec(config.model)
        self.model = base_model if base_model is not None else load_model(config.model, device=device)
        self.model.to(device)
        self.identity = self.model.anchor.identity.to_dict()
        entry = ModalityConfig(encoder=config.encoder, encoder_args=dict(config.encoder_args),
                               preprocess=config.preprocess, weights=config.init_weights,
                               templates=config.templates, seed=config.seed)
        bound = build_modality(config.modality, entry, self.model.anchor, None)
        self.encoder, self.modality = bound.encoder.to(device), bound.modality
        self.module = self.encoder
        self.input_cache = self.build_input_cache()
        self.features: torch.Tensor | None = None  # [N, ...] cached backbone outputs of the train rows

    def build_input_cache(self) -> InputCache | None:
        """The decode-once cache of loaded + front-ended inputs (None when ``data.cache_inputs`` is off)."""
        data = self.config.data
        enabled = data.cache_inputs if data.cache_inputs is not None else self.modality.deterministic_load
        if not enabled:
            return None
        return open_input_cache(self.load_uncached, split=self.modality.split_batch, join=self.modality.join_batches,
                                key_of=FileKeys(), description=self.cache_description() if data.input_cache_disk
                                else None, folder=data.input_cache_dir, memory_mb=data.input_cache_memory_mb)

    def cache_description(self) -> dict[str, Any]:
        """What a cached input depends on besides its file content (its digest names the store folder)."""
        import anybind

        preprocess = self.modality.preprocess
        pixels = getattr(self.model.anchor, "image_preprocess", None)
        return {"modality": self.config.modality, "encoder": type(self.encoder).encoder_name,
                "front_end": type(self.encoder).front_end is not Encoder.front_end,
                "encoder_args": front_end_args(self.encoder),
                "preprocess": to_dict(preprocess) if preprocess is not None else None,
                "load_options": dict(self.config.data.load_options),
                "anchor_pixels": to_dict(pixels) if pixels is not None else None, "anybind": anybind.__version__}

    # -- setup -----------------------------------------------------------------------------
    def open(self, *, resume: bool, overwrite: bool) -> None:
        """Claim the run folder, read the data, cache anchor vectors, build the optimizer, restore."""
        resumed = self.claim_folder(bind_config_to_dict(self.config), self.identity, resume=resume,
                                    overwrite=overwrite, differences=math_differences)
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
        select_trainable(self.encoder, self.config.train.params)
        self.dataset = MicroBatches([p.input for p in self.train_pairs], self.load_inputs, self.config.train.batch_size,
                                    self.config.seed, self.rank, self.world_size)
        self.prepare(resumed, len(self.train_pairs))
        if self.head_features_enabled():
            self.cache_backbone_features()

    def resolve_precision(self) -> None:
        """`TrainingRun.resolve_precision`, except that a head trained on cached backbone features stays
        fp32 under ``auto``: its step is too small to gain."""
        if self.config.train.precision == "auto" and self.head_features_enabled():
            self.precision_reason = "only the head trains, on cached backbone features: too small a step to gain"
            self.set_precision("fp32")
            if self.rank == 0:
                LOG.info("precision: fp32 (train.precision auto: %s)", self.precision_reason)
            return
        super().resolve_precision()

    def probe_batch(self) -> tuple[Any, torch.Tensor]:
        """A quarter of micro-batch 0: (modality batch, anchor vectors) on the device."""
        rows = self.dataset.rows(0)
        rows = rows[:max(2, len(rows) // PROBE_FRACTION)]
        return (to_device(self.load_inputs([self.train_pairs[i].input for i in rows]), self.device),
                self.anchor_vectors_of(rows))

    def probe_workload(self, batch: Any) -> dict[str, Any]:
        """The encoder, modality, batch shapes and trained parameters."""
        shapes = {k: list(v.shape) for k, v in batch.items()} if isinstance(batch, dict) else list(batch.shape)
        return {"encoder": type(self.encoder).encoder_name, "encoder_args": to_dict(self.encoder.config),
                "modality": self.config.modality, "batch": shapes, "params": self.config.train.params}

    def set_train_mode(self) -> None:
        """Training mode; with ``train.params: head`` the frozen backbone stays in eval mode."""
        set_train_mode(self.encoder, self.config.train.params == "head")

    def extra_state(self) -> dict[str, Any]:
        """The anchor identity the run trains against."""
        return {"anchor": self.identity}

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
        self.head_only_features = True
        self.plain_objective.head_only_features = True
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

    def pipeline(self, last_step: int) -> Iterator[tuple[Any, torch.Tensor]] | None:
        """The `DataLoader` pipeline (None with cached backbone features: nothing to load)."""
        if self.features is not None:
            return None
        cache = self.input_cache
        return self.micro_batches(last_step, cached_in_memory=cache is not None and cache.all_in_memory)

    def validate(self) -> dict[str, float]:
        """Validation metrics (rank 0 computes them; other ranks get {})."""
        metrics: dict[str, float] = {}
        if self.rank == 0 and self.val_pairs:
            metrics = evaluate(self.encoder, self.load_inputs, self.val_pairs, self.val_vectors, self.config,
                               self.device, self.precision)
        barrier()
        return metrics

    def fit(self, stop_after: int | None) -> BindResult:
        """`train` (see `TrainingRun.train`) as a `BindResult`."""
        result = self.train(stop_after)
        return BindResult(output_dir=self.output_dir, bundle_dir=result.bundle_dir, step=result.step,
                          total_steps=result.total_steps, train_loss=result.train_loss,
                          logit_scale=result.logit_scale, metrics=result.metrics, train_rows=len(self.train_pairs),
                          val_rows=len(self.val_pairs), skipped_rows=self.skipped, rank=self.rank,
                          step_seconds=result.step_seconds, steps_per_second=result.steps_per_second)

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
