"""Metric arithmetic against values computed by hand on fixed score matrices."""

from __future__ import annotations

import numpy as np
import pytest

from anybind.errors import InputError
from anybind.eval.metrics import bootstrap_interval, first_relevant_rank, mean_of_groups, retrieval_metrics, top1_correct

# 4 items x 3 classes. argmax per row: 0, 2, 1, 0 (row 3 ties 0 and 1 -> lowest index, 0).
SCORES = np.array([[0.9, 0.1, 0.0],
                   [0.2, 0.3, 0.5],
                   [0.1, 0.8, 0.1],
                   [0.4, 0.4, 0.2]])
LABELS = np.array([0, 1, 1, 1])


def test_top1_by_hand() -> None:
    assert top1_correct(SCORES, LABELS).tolist() == [True, False, True, False]  # 2 of 4 = 50%


def test_mean_of_folds_by_hand() -> None:
    correct = np.array([1.0, 0.0, 1.0, 1.0, 1.0])  # fold a: 1/2, fold b: 3/3
    assert mean_of_groups(correct, np.array(["a", "a", "b", "b", "b"])) == pytest.approx(0.75)
    assert correct.mean() == pytest.approx(0.8)  # pooled differs: the aggregate matters


def test_retrieval_ranks_and_metrics_by_hand() -> None:
    # 3 text queries over 4 clips; query q's clip is q. Sorted clip orders: q0: 0,1,2,3 -> rank 0;
    # q1: 3,2,1,0 -> rank 2; q2: 0,1,3,2 -> rank 3.
    scores = np.array([[0.9, 0.5, 0.3, 0.1],
                       [0.1, 0.2, 0.3, 0.4],
                       [0.9, 0.8, 0.1, 0.7]])
    ranks = first_relevant_rank(scores, [[0], [1], [2]])
    assert ranks.tolist() == [0, 2, 3]
    metrics = {name: float(values.mean()) for name, values in retrieval_metrics(ranks).items()}
    assert metrics["R@1"] == pytest.approx(1 / 3)
    assert metrics["R@5"] == pytest.approx(1.0) and metrics["R@10"] == pytest.approx(1.0)
    assert metrics["mAP@10"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)  # 0.527777...
    # Several relevant items (audio->text, 5 captions a clip): the best-placed one counts.
    assert first_relevant_rank(scores, [[2, 3], [0, 3], [1]]).tolist() == [2, 0, 1]
    assert retrieval_metrics(np.array([9, 10]))["mAP@10"].tolist() == [0.1, 0.0]


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    values = np.array([1.0] * 30 + [0.0] * 10)
    low, high = bootstrap_interval(values)
    assert (low, high) == bootstrap_interval(values)
    assert low < 0.75 < high and high - low < 0.35
    assert bootstrap_interval(np.ones(5)) == (1.0, 1.0)
    # Grouped: resampled within each fold, statistic = mean of fold means (here 0.5 and 1.0 -> 0.75 exactly).
    groups = np.array(["a"] * 4 + ["b"] * 4)
    assert bootstrap_interval(np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), groups)[1] <= 1.0
    assert bootstrap_interval(np.array([0.5] * 4 + [1.0] * 4), groups) == pytest.approx((0.75, 0.75))


@pytest.mark.parametrize("call, words", [
    (lambda: top1_correct(SCORES, np.array([0, 1, 3, 0])), "`labels`: class indices must be in [0, 2]"),
    (lambda: top1_correct(SCORES, np.array([0, 1])), "`labels`: expected 4 integer class indices"),
    (lambda: top1_correct(np.zeros((0, 3)), np.array([], int)), "`scores`: expected a non-empty"),
    (lambda: top1_correct(SCORES * np.nan, LABELS), "`scores`: expected finite scores"),
    (lambda: first_relevant_rank(SCORES, [[0]]), "`relevant`: expected one list per query (4), got 1"),
    (lambda: first_relevant_rank(SCORES, [[0], [], [1], [2]]), "`relevant[1]`: expected candidate indices"),
    (lambda: bootstrap_interval(np.array([])), "`values`: expected a non-empty 1-D array"),
])
def test_bad_metric_inputs(call, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as error:
        call()
    assert words in str(error.value)
