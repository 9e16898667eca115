"""Learning-rate schedule surprises are reported: a warmup longer than the run warns, naming both values."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from anybind.train import bind
from anybind.train.optim import cosine_with_warmup


def test_warmup_longer_than_the_run_warns_naming_both_values() -> None:
    with pytest.warns(UserWarning, match=r"`train\.warmup_steps` is 1000 but the run has only 600 step"):
        factor = cosine_with_warmup(1000, 600, 0.0)
    assert factor(599) == pytest.approx(0.6)


def test_warmup_that_fits_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cosine_with_warmup(100, 600, 0.0)


def test_bind_warns_when_steps_cut_the_warmup(toy, toy_data, base_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = toy.recipe(tmp_path, toy_data, train={"steps": 2, "warmup_steps": 10})
    with pytest.warns(UserWarning, match=r"`train\.warmup_steps` is 10 but the run has only 2 step"):
        bind(config, base_model=base_model)
