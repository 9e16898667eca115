"""Evaluation metrics on score matrices, and percentile-bootstrap 95% intervals.

Classification: top-1 accuracy (per fold, and the mean over folds as CLAP / ImageBind report
ESC-50 and UrbanSound8K). Retrieval: R@k and mAP@10 as LAION-CLAP computes them
(``training/train.py`` and its README): for each query, the rank of the *first* relevant item;
R@k = share of queries with that rank < k; mAP@10 = mean of ``1 / (rank + 1)`` when rank < 10,
else 0 (exactly AP@10 when a query has one relevant item, as text->audio does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anybind.errors import InputError

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def _matrix(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise InputError(f"`{name}`: expected a non-empty [queries, candidates] score matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise InputError(f"`{name}`: expected finite scores, got NaN/inf")
    return scores


def top1_correct(scores: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[N, C]`` class scores and ``[N]`` true class indices -> ``[N]`` booleans (argmax == label).

    Ties go to the lowest class index (numpy's argmax).
    """
    scores = _matrix(scores, "scores")
    labels = np.asarray(labels)
    if labels.shape != (scores.shape[0],) or labels.dtype.kind not in "iu":
        raise InputError(f"`labels`: expected {scores.shape[0]} integer class indices, got shape {labels.shape} "
                         f"dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise InputError(f"`labels`: class indices must be in [0, {scores.shape[1] - 1}], got "
                         f"[{labels.min()}, {labels.max()}]")
    return scores.argmax(axis=1) == labels


def first_relevant_rank(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """``[Q, M]`` scores and, per query, the indices of its relevant candidates -> ``[Q]`` 0-based rank
    of the best-placed relevant candidate (candidates sorted by descending score, ties broken by index)."""
    scores = _matrix(scores, "scores")
    if len(relevant) != scores.shape[0]:
        raise InputError(f"`relevant`: expected one list per query ({scores.shape[0]}), got {len(relevant)}")
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(scores.shape[1])[None, :].repeat(scores.shape[0], 0), axis=1)
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for query, targets in enumerate(relevant):
        targets = list(targets)
        if not targets or min(targets) < 0 or max(targets) >= scores.shape[1]:
            raise InputError(f"`relevant[{query}]`: expected candidate indices in [0, {scores.shape[1] - 1}], "
                             f"got {targets!r}")
        ranks[query] = position[query, targets].min()
    return ranks


def retrieval_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """``[Q]`` first-relevant ranks -> per-query values of ``R@k`` (0/1) and ``mAP@10`` (1/(rank+1) or 0).

    The metric is the mean of each array; they are returned per query for the bootstrap.
    """
    ranks = np.asarray(ranks)
    out = {f"R@{k}": (ranks < k).astype(np.float64) for k in ks}
    out["mAP@10"] = np.where(ranks < 10, 1.0 / (ranks + 1), 0.0)
    return out


def mean_of_groups(values: np.ndarray, groups: np.ndarray) -> float:
    """The mean over groups (e.g. folds) of each group's mean of `values`."""
    return float(np.mean([values[groups == g].mean() for g in np.unique(groups)]))


def bootstrap_interval(values: np.ndarray, groups: np.ndarray | None = None, *,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item `values` (e.g. 0/1 correctness).

    With `groups` (a fold per item), items are resampled within each group and the statistic is
    the mean of the group means, matching `mean_of_groups`. Deterministic for a given `seed`.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"`values`: expected a non-empty 1-D array, got shape {values.shape}")
    if not 0 < confidence < 1 or resamples < 1:
        raise InputError(f"`confidence`/`resamples`: expected (0, 1) and >= 1, got {confidence}, {resamples}")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)] if groups is not None else [np.arange(values.size)]
    statistics = np.zeros(resamples)
    for index in members:
        picks = rng.integers(0, index.size, size=(resamples, index.size))
        statistics += values[index][picks].mean(axis=1)
    statistics /= len(members)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(statistics, [alpha, 1 - alpha])
    return float(low), float(high)
