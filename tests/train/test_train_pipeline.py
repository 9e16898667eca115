"""The training input pipeline: exact resume with DataLoader workers, frozen-backbone feature
caching equivalent to recomputing the backbone, and the `precision: auto` rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anybind.train import bind
from anybind.train.checkpoints import CheckpointManager
from anybind.train.precision import choose_precision
from anybind.train.run_dir import read_metrics


def test_resume_with_workers_equals_uninterrupted_run(toy, toy_data, base_model, tiny_anchor_file,
                                                      tmp_path: Path) -> None:
    def recipe(name: str, workers: int):  # type: ignore[no-untyped-def]
        # dropout 0.1 (toy default): the RNG state must survive the worker pipeline and the restart
        return toy.recipe(tmp_path / name, toy_data, model=str(tiny_anchor_file),
                          data={"num_workers": workers, "prefetch_batches": 2, "cache_inputs": False},
                          train={"steps": 6, "warmup_steps": 1}, log={"every_steps": 1},
                          checkpoint={"every_steps": 2, "keep_last": 2})

    whole = bind(recipe("whole", 0), base_model=base_model)
    split = recipe("split", 2)
    bind(split, stop_after=3, base_model=base_model)
    resumed = bind(split, resume=True, base_model=base_model)
    expected = CheckpointManager(whole.output_dir / "checkpoints").load_latest()["encoder"]
    got = CheckpointManager(resumed.output_dir / "checkpoints").load_latest()["encoder"]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    losses = [r["train_loss"] for r in read_metrics(resumed.output_dir)]
    assert [int(r["step"]) for r in read_metrics(resumed.output_dir)] == list(range(1, 7))
    assert losses == pytest.approx([r["train_loss"] for r in read_metrics(whole.output_dir)], rel=1e-5)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """24 one-second tones paired with captions."""
    import soundfile

    folder = tmp_path_factory.mktemp("clips")
    t = np.arange(16000) / 16000
    lines = ["input,caption"]
    for index in range(24):
        soundfile.write(folder / f"t{index}.wav", (0.3 * np.sin(2 * np.pi * (150 + 90 * index) * t)).astype(np.float32),
                        16000)
        lines.append(f"t{index}.wav,a tone number {index}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def test_frozen_backbone_features_give_the_same_loss_curve(clips: Path, base_model, tiny_anchor_file,
                                                           tmp_path: Path) -> None:
    def recipe(name: str, cache_features: bool) -> dict:
        return {"modality": "audio", "encoder": "cnn", "encoder_args": {"architecture": "cnn-tiny", "dropout": 0.0},
                "preprocess": "cnn-16k", "model": str(tiny_anchor_file), "output_dir": str(tmp_path / name),
                "data": {"manifest": str(clips), "val_fraction": 0.0, "cache_features": cache_features,
                         "anchor_cache_dir": str(tmp_path / "anchors"), "input_cache_dir": str(tmp_path / "inputs")},
                "train": {"params": "head", "batch_size": 8, "steps": 20, "lr": 1e-2, "warmup_steps": 2,
                          "device": "cpu", "num_threads": 1, "precision": "fp32"},
                "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 1},
                "log": {"every_steps": 1, "tensorboard": False, "progress": False}}

    cached = bind(recipe("cached", True), base_model=base_model)
    recomputed = bind(recipe("recomputed", False), base_model=base_model)
    curve = [float(r["train_loss"]) for r in read_metrics(cached.output_dir)]
    assert len(curve) == 20 and curve[-1] < curve[0]  # the head learns
    reference = [float(r["train_loss"]) for r in read_metrics(recomputed.output_dir)]
    assert curve == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize(("requested", "timings", "native", "expected", "words"), [
    ("fp32", {"fp32": 1.0, "bf16": 0.1}, True, "fp32", "set in the recipe"),
    ("bf16", {"fp32": 0.1, "bf16": 1.0}, False, "bf16", "set in the recipe"),
    ("auto", {"fp32": 1.0, "bf16": 0.5}, False, "fp32", "no native bf16"),
    ("auto", {"fp32": 1.0, "bf16": 0.5}, True, "bf16", "faster: timed steps: fp32 1000 ms, bf16 500 ms (2.00x)"),
    ("auto", {"fp32": 1.0, "bf16": 0.95}, True, "fp32", "not >= 1.1x faster"),
])
def test_precision_auto_rule(monkeypatch, requested: str, timings: dict, native: bool, expected: str,
                             words: str) -> None:
    monkeypatch.setattr("anybind.train.precision.cpu_has_native_bf16", lambda: native)
    calls: list[str] = []

    def time_step(precision: str) -> float:
        calls.append(precision)
        return timings[precision]

    chosen, reason = choose_precision(requested, torch.device("cpu"), time_step)
    assert chosen == expected and words in reason
    assert bool(calls) == (requested == "auto" and native)  # timed only when it decides


def test_encoder_without_a_head_split_says_how_to_proceed(toy, base_model) -> None:  # type: ignore[no-untyped-def]
    from anybind.errors import ConfigError
    from anybind.model import build_modality

    encoder = build_modality(toy.NAME, {}, base_model.anchor).encoder
    assert encoder.splits_head is False
    for call in (lambda: encoder.backbone_features(torch.zeros(2, 64)), lambda: encoder.forward_head(torch.zeros(2, 4))):
        with pytest.raises(ConfigError, match=r"ToyMLP does not split backbone and head .*`data.cache_features: false`"):
            call()


@pytest.mark.parametrize("can_fork", [True, False])
def test_workers_get_the_same_batches_with_an_unpicklable_loader(monkeypatch: pytest.MonkeyPatch, caplog,
                                                                 can_fork: bool) -> None:
    import multiprocessing

    from anybind.train.pipeline import MicroBatches, iterate_micro_batches

    scale = torch.arange(12.0)
    dataset = MicroBatches([Path(f"{i}") for i in range(12)], lambda paths: scale[[int(p.name) for p in paths]] * 2,
                           batch_size=4, seed=3)  # a lambda: spawned workers could not unpickle it
    inline = [(batch.clone(), rows.clone()) for batch, rows in iterate_micro_batches(dataset, 1, 7, workers=0,
                                                                                     prefetch=2, pin_memory=False)]
    if not can_fork:  # e.g. Windows
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    pooled = list(iterate_micro_batches(dataset, 1, 7, workers=1, prefetch=2, pin_memory=False))
    assert len(pooled) == len(inline) == 6
    for (a, ra), (b, rb) in zip(inline, pooled):
        assert torch.equal(a, b) and torch.equal(ra, rb)
    assert ("cannot fork worker processes" in caplog.text) is not can_fork
