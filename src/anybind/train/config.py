"""The binding recipe: a YAML file parsed into the frozen `BindConfig` dataclass.

A recipe names the modality and its encoder, the base model whose frozen anchor the modality
is bound to, the paired data, the optimization schedule and where the run is written::

    modality: audio
    encoder: cnn
    model: tiny                      # preset name, model config file or bundle folder
    output_dir: runs/audio-cnn       # relative paths start at the recipe's folder
    data: {manifest: data/pairs.csv, val_fraction: 0.1}
    train: {batch_size: 64, steps: 2000, lr: 1.0e-3, warmup_steps: 100}

Unknown keys anywhere are a `ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from anybind.config import from_dict, read_data_file, to_dict
from anybind.errors import ConfigError, InputError

CLIP_MAX_LOGIT_SCALE = 100.0  # CLIP: logit scale clipped at 100 to keep training stable
SIGLIP_INIT_LOGIT_SCALE = 10.0  # SigLIP (Zhai et al. 2023): t' = log 10
SIGLIP_INIT_LOGIT_BIAS = -10.0  # SigLIP: b = -10


@dataclass(frozen=True)
class DataConfig:
    """Where the paired data is and how it is split and read."""

    manifest: str  # CSV or JSONL of pairs (relative to the recipe's folder)
    val_manifest: str | None = None  # separate validation pairs; else split `manifest`
    val_fraction: float = 0.1  # share of rows held out by the seeded rule (no `split` column, no val_manifest)
    input_column: str = "input"  # column holding the modality input path (relative to the manifest)
    skip_bad_rows: bool = False  # skip (and count) rows with missing/corrupt files instead of failing
    check_inputs: bool = True  # load every input once up front to find corrupt files (false: existence only)
    # Decode-once input cache (see `anybind.train.input_cache`): null = on for modalities whose
    # loader is deterministic (every built-in one), true/false forces it.
    cache_inputs: bool | None = None
    input_cache_memory_mb: int = 2048  # cached inputs kept in memory up to this size; the rest read from disk
    input_cache_disk: bool = True  # also keep them in the on-disk store (shared by runs, survives restarts)
    input_cache_dir: str | None = None  # default: $ANYBIND_HOME/input-cache/<cache config digest>
    cache_features: bool = True  # with `train.params: head`, compute the frozen backbone's outputs once
    num_workers: int | None = None  # DataLoader worker processes; null: 0 when cached in memory, else up to 4
    prefetch_batches: int = 2  # batches each worker loads ahead
    load_options: dict = field(default_factory=dict)  # keyword options for the modality's `load`
    cache_anchor: bool = True  # False recomputes the frozen anchor every step (benchmarks only)
    anchor_cache_dir: str | None = None  # default: $ANYBIND_HOME/anchor-cache/<anchor digest>
    verify_cached: int = 2  # cached anchor vectors recomputed at start to detect a changed anchor


@dataclass(frozen=True)
class TrainConfig:
    """Optimization: AdamW, cosine schedule with linear warmup, accumulation, clipping, precision."""

    params: Literal["all", "head"] = "all"  # train every encoder parameter, or only its head
    batch_size: int = 64  # global contrastive batch per micro-step (split over DDP ranks)
    grad_accum_steps: int = 1  # micro-steps per optimizer step (negatives stay within a micro-step)
    steps: int | None = None  # optimizer steps; or give `epochs`
    epochs: float | None = None  # passes over the training rows (converted to steps)
    lr: float = 1.0e-3  # peak learning rate
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of `lr`
    warmup_steps: int = 0  # linear warmup from 0 to `lr`
    weight_decay: float = 0.2  # AdamW decay of >= 2-D weights (biases, norms, temperature: none)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1.0e-6
    grad_clip: float | None = 1.0  # max global gradient norm; None disables clipping
    # bf16 runs the encoder forward under autocast; auto: bf16 on CUDA with bf16 and on CPUs where
    # native bf16 measures faster, else fp32 (see `anybind.train.precision`)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str | None = None  # default: cuda if available, else cpu
    num_threads: int | None = None  # torch CPU threads (default: torch's)


@dataclass(frozen=True)
class LossConfig:
    """The contrastive loss between modality vectors and anchor vectors."""

    kind: Literal["infonce", "siglip"] = "infonce"  # symmetric InfoNCE (CLIP) or sigmoid (SigLIP)
    init_logit_scale: float | None = None  # default: 1/0.07 (infonce) or 10 (siglip)
    init_logit_bias: float | None = None  # siglip only; default -10
    max_logit_scale: float = CLIP_MAX_LOGIT_SCALE
    learn_logit_scale: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Validation retrieval (R@1/R@5 both directions)."""

    every_steps: int = 100  # also evaluated at the end; 0 evaluates only at the end
    batch_size: int = 256  # modality inputs per forward pass when embedding the validation rows


@dataclass(frozen=True)
class CheckpointConfig:
    """Periodic atomic checkpoints for `--resume`."""

    every_steps: int = 100  # 0: only the final checkpoint
    keep_last: int = 3  # older checkpoints are deleted


@dataclass(frozen=True)
class LogConfig:
    """Metrics output: `metrics.csv` always, TensorBoard optionally, a tqdm bar."""

    every_steps: int = 10
    tensorboard: bool = True
    progress: bool = True


@dataclass(frozen=True)
class BindConfig:
    """A whole binding recipe (see the module docstring for the YAML form)."""

    modality: str  # registered modality name
    model: str  # the base model whose anchor is used: preset, model config file, or bundle folder
    output_dir: str  # run folder: checkpoints, metrics, tensorboard, and the `bundle/` result
    data: DataConfig
    encoder: str | None = None  # encoder name (default: the modality's default encoder)
    encoder_args: dict = field(default_factory=dict)  # fields of the encoder's Config
    preprocess: str | dict | None = None  # the modality's preprocessing config name or fields
    templates: str | None = None  # zero-shot prompt templates recorded in the bundle
    init_weights: str | None = None  # safetensors weights to start the encoder from
    seed: int = 0  # init, data order, split and dropout
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    name: str | None = None  # bundle name (default: "<model>+<modality>")


# Fields that may change between a run and its `--resume` (they do not change the math).
RESUMABLE_CHANGES = ("output_dir", "name", "templates", "train.device", "train.num_threads", "data.cache_anchor",
                     "data.anchor_cache_dir", "data.verify_cached", "data.cache_inputs", "data.input_cache_memory_mb",
                     "data.input_cache_disk", "data.input_cache_dir", "data.cache_features", "data.num_workers",
                     "data.prefetch_batches", "eval", "checkpoint", "log")


def _check_values(config: BindConfig, where: str) -> None:
    train, data = config.train, config.data
    positive = {"train.batch_size": train.batch_size, "train.grad_accum_steps": train.grad_accum_steps,
                "eval.batch_size": config.eval.batch_size, "checkpoint.keep_last": config.checkpoint.keep_last,
                "log.every_steps": config.log.every_steps}
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{where}: `{name}` must be >= 1, got {value}")
    for name, value in {"data.input_cache_memory_mb": data.input_cache_memory_mb,
                        "data.num_workers": data.num_workers or 0, "data.prefetch_batches": data.prefetch_batches,
                        "train.warmup_steps": train.warmup_steps, "eval.every_steps": config.eval.every_steps,
                        "checkpoint.every_steps": config.checkpoint.every_steps,
                        "data.verify_cached": data.verify_cached}.items():
        if value < 0:
            raise ConfigError(f"{where}: `{name}` must be >= 0, got {value}")
    if (train.steps is None) == (train.epochs is None):
        raise ConfigError(f"{where}: give exactly one of `train.steps` and `train.epochs`, got "
                          f"steps={train.steps!r}, epochs={train.epochs!r}")
    if train.steps is not None and train.steps < 1:
        raise ConfigError(f"{where}: `train.steps` must be >= 1, got {train.steps}")
    if train.epochs is not None and not (math.isfinite(train.epochs) and train.epochs > 0):
        raise ConfigError(f"{where}: `train.epochs` must be > 0, got {train.epochs}")
    if not math.isfinite(train.lr) or train.lr <= 0:
        raise ConfigError(f"{where}: `train.lr` must be > 0, got {train.lr} (a finite number)")
    if not math.isfinite(train.weight_decay) or train.weight_decay < 0:
        raise ConfigError(f"{where}: `train.weight_decay` must be a finite number >= 0, got {train.weight_decay}")
    if not all(math.isfinite(beta) and 0 <= beta < 1 for beta in train.betas):
        raise ConfigError(f"{where}: `train.betas` must be two numbers in [0, 1), got {list(train.betas)}")
    if not math.isfinite(train.eps) or train.eps <= 0:
        raise ConfigError(f"{where}: `train.eps` must be a finite number > 0, got {train.eps}")
    if not 0 <= train.min_lr_ratio <= 1:
        raise ConfigError(f"{where}: `train.min_lr_ratio` must be in [0, 1], got {train.min_lr_ratio}")
    if train.grad_clip is not None and not train.grad_clip > 0:
        raise ConfigError(f"{where}: `train.grad_clip` must be > 0 or null, got {train.grad_clip}")
    if not 0 <= data.val_fraction < 1:
        raise ConfigError(f"{where}: `data.val_fraction` must be in [0, 1), got {data.val_fraction}")
    if config.loss.max_logit_scale <= 0:
        raise ConfigError(f"{where}: `loss.max_logit_scale` must be > 0, got {config.loss.max_logit_scale}")


def parse_bind_config(data: Mapping[str, Any], where: str = "bind config", base_dir: Path | None = None) -> BindConfig:
    """Validate a recipe mapping into `BindConfig`; relative paths are resolved against `base_dir`.

    Raises `ConfigError` naming unknown keys, missing keys and bad values.
    """
    config = from_dict(BindConfig, data, where)
    _check_values(config, where)
    if base_dir is None:
        return config
    return resolve_paths(config, base_dir)


def resolve_paths(config: BindConfig, base_dir: Path) -> BindConfig:
    """`config` with its relative file paths made absolute against `base_dir` (the recipe's folder).

    `model` is resolved only when it names an existing file or folder there (else it is a preset).
    """
    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute():
            return value
        return str((base_dir / value).resolve())

    model = config.model
    if not Path(model).expanduser().is_absolute() and (base_dir / model).exists():
        model = str((base_dir / model).resolve())
    data = dataclasses.replace(config.data, manifest=absolute(config.data.manifest),  # type: ignore[arg-type]
                               val_manifest=absolute(config.data.val_manifest),
                               anchor_cache_dir=absolute(config.data.anchor_cache_dir),
                               input_cache_dir=absolute(config.data.input_cache_dir))
    return dataclasses.replace(config, model=model, data=data, output_dir=absolute(config.output_dir),  # type: ignore[arg-type]
                               init_weights=absolute(config.init_weights))


def load_bind_config(source: str | Path | Mapping[str, Any] | BindConfig) -> BindConfig:
    """A recipe from a YAML/JSON file, a mapping (paths relative to the working folder) or a `BindConfig`."""
    if isinstance(source, BindConfig):
        return source
    if isinstance(source, Mapping):
        return parse_bind_config(source, "bind config", Path.cwd())
    if not isinstance(source, (str, Path)):
        raise InputError(f"`config`: expected a recipe file path, a mapping or a BindConfig, got {type(source).__name__}")
    path = Path(source).expanduser()
    return parse_bind_config(read_data_file(path), f"recipe {str(path)!r}", path.resolve().parent)


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two config dicts (recursively)."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names.extend(config_differences(a, b, name + "."))
        elif a != b:
            names.append(name)
    return names


def math_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                     resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> list[str]:
    """Like `config_differences`, ignoring `resumable` (settings a resume may change; default: a binding
    recipe's `RESUMABLE_CHANGES`)."""
    return [name for name in config_differences(old, new)
            if not any(name == allowed or name.startswith(allowed + ".") for allowed in resumable)]


def bind_config_to_dict(config: BindConfig) -> dict[str, Any]:
    """JSON-ready form of a recipe."""
    return to_dict(config)
