"""Optimizer pieces shared by trainers: CLIP-style AdamW parameter groups and a cosine schedule."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn


def adamw_param_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on >= 2-D weights; none on biases, norms and scalars such as the
    logit scale (as in CLIP / open_clip)."""
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warn_if_warmup_too_long(warmup_steps: int, total_steps: int, where: str = "train.warmup_steps") -> None:
    """Warn (`UserWarning`) when a linear warmup of `warmup_steps` does not end before the run's
    `total_steps`: the learning rate would then never reach its peak. `where` names the setting."""
    if warmup_steps >= total_steps:
        warnings.warn(f"`{where}` is {warmup_steps} but the run has only {total_steps} step(s): the learning rate "
                      f"never reaches its peak (it stops at {min(total_steps, warmup_steps) / max(1, warmup_steps):.0%} "
                      f"of it); lower `{where}` below {total_steps}", UserWarning, stacklevel=3)


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float,
                       where: str = "train.warmup_steps") -> Callable[[int], float]:
    """LR multiplier of step s (for `LambdaLR`): linear warmup to 1 over `warmup_steps`, then a
    half cosine down to `min_ratio` at `total_steps`. Warns (naming `where`) when the warmup
    does not fit in the run (see `warn_if_warmup_too_long`)."""
    warn_if_warmup_too_long(warmup_steps, total_steps, where)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
