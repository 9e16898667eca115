"""End-to-end binding of the toy modality to the tiny anchor: loss falls, recall rises, the bundle works."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import anybind
from anybind.train import bind
from anybind.train.run_dir import read_metrics

BASELINE_MARGIN = 0.1  # trained R@1 may trail the closed-form least-squares map by at most this much
MIN_RECALL = 0.75  # and must reach this in absolute terms (chance is about 0.03)


def least_squares_recall(manifest: Path, model, val_fraction: float = 0.25, seed: int = 0) -> float:  # type: ignore[no-untyped-def]
    """Validation R@1 (modality -> anchor) of the closed-form least-squares map inputs -> anchor vectors.

    The toy inputs are a noisy linear mix of their partners' anchor vectors, so this is the recall a
    correct linear binding reaches on the same split; a half-broken loss lands well below it.
    """
    import numpy as np

    from anybind.train.evaluation import paired_recall
    from anybind.train.manifest import read_pairs, split_pairs

    train, val = split_pairs(read_pairs(manifest, partner_columns=("image", "caption")).pairs, val_fraction, seed)

    def arrays(pairs):  # type: ignore[no-untyped-def]
        inputs = torch.from_numpy(np.stack([np.load(p.input) for p in pairs])).double()
        texts = [p.partner for p in pairs if p.partner_kind == "caption"]
        images = [p.partner for p in pairs if p.partner_kind == "image"]
        vectors = {"caption": iter(model.embed("text", texts).as_subclass(torch.Tensor).tolist() if texts else []),
                   "image": iter(model.embed("image", images).as_subclass(torch.Tensor).tolist() if images else [])}
        anchor = torch.tensor([next(vectors[p.partner_kind]) for p in pairs], dtype=torch.float64)
        return torch.cat([inputs, torch.ones(len(pairs), 1, dtype=torch.float64)], dim=1), anchor

    train_x, train_y = arrays(train)
    val_x, val_y = arrays(val)
    weights = torch.linalg.lstsq(train_x, train_y).solution
    predicted = torch.nn.functional.normalize(val_x @ weights, dim=-1).float()
    metrics = paired_recall(predicted, val_y.float(), [str(p.input) for p in val], [p.partner for p in val])
    return metrics["r1_modality_to_anchor"]


@pytest.fixture(scope="module")
def baseline_r1(toy_data: Path, base_model) -> float:  # type: ignore[no-untyped-def]
    """The least-squares baseline's validation R@1 on the shared toy data."""
    return least_squares_recall(toy_data, base_model)


def test_binding_lowers_loss_lifts_recall_and_writes_a_usable_bundle(toy, toy_data, base_model, tiny_anchor_file,
                                                                     baseline_r1: float, tmp_path: Path) -> None:
    config = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file), templates="image", train={"steps": 160})
    result = bind(config, base_model=base_model)
    rows = read_metrics(result.output_dir)
    assert rows[0]["train_loss"] > 1.5 * rows[-1]["train_loss"]
    chance = result.metrics["val_chance_r1_modality_to_anchor"]
    assert chance < 0.1
    print(f"val R@1 trained {result.metrics['val_r1_modality_to_anchor']:.3f} / "
          f"{result.metrics['val_r1_anchor_to_modality']:.3f}, least squares {baseline_r1:.3f}, chance {chance:.3f}")
    assert result.metrics["val_r1_modality_to_anchor"] >= max(MIN_RECALL, baseline_r1 - BASELINE_MARGIN)
    assert result.metrics["val_r1_anchor_to_modality"] >= max(MIN_RECALL, baseline_r1 - BASELINE_MARGIN)
    assert rows[-1]["val_r1_modality_to_anchor"] == pytest.approx(result.metrics["val_r1_modality_to_anchor"], abs=1e-5)
    assert 0 < rows[-1]["temperature"] == pytest.approx(1 / result.logit_scale, rel=1e-4)

    bundle = anybind.load(result.bundle_dir, device="cpu")
    assert bundle.anchor_key == base_model.anchor_key
    assert bundle.logit_scale("toyvec") == pytest.approx(result.logit_scale)
    inputs = sorted(str(p) for p in (toy_data.parent / "inputs").glob("*.npy"))[:8]
    vectors = bundle.embed("toyvec", inputs)
    assert vectors.anchor == base_model.anchor_key
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(8), atol=1e-5)
    # Same vectors when the trained encoder is rebuilt from the run's last checkpoint.
    from anybind.train.checkpoints import CheckpointManager

    state = CheckpointManager(result.output_dir / "checkpoints").load_latest()
    encoder = bundle.encoder("toyvec")
    assert all(torch.equal(state["encoder"][k], v) for k, v in encoder.state_dict().items())
    assert bundle.config.info["anchor_identity"] == base_model.anchor.identity.to_dict()


def test_bundle_is_zero_shot_classifiable(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    config = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file), train={"steps": 2})
    result = bind(config, base_model=base_model)
    bundle = anybind.load(result.bundle_dir, device="cpu")
    inputs = sorted(str(p) for p in (toy_data.parent / "inputs").glob("*.npy"))[:3]
    probabilities = bundle.zero_shot("toyvec", inputs, ["dog", "cat", "car"])
    assert probabilities.shape == (3, 3)
    assert torch.allclose(probabilities.sum(dim=-1), torch.ones(3), atol=1e-4)


def test_siglip_loss_option_also_binds(toy, toy_data, base_model, tiny_anchor_file, baseline_r1: float,
                                       tmp_path: Path) -> None:
    config = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file), loss={"kind": "siglip"},
                        train={"steps": 200, "lr": 1e-2})
    result = bind(config, base_model=base_model)
    rows = read_metrics(result.output_dir)
    assert rows[0]["train_loss"] > rows[-1]["train_loss"]
    print(f"siglip val R@1 {result.metrics['val_r1_modality_to_anchor']:.3f}, least squares {baseline_r1:.3f}")
    assert result.metrics["val_r1_modality_to_anchor"] >= max(MIN_RECALL, baseline_r1 - BASELINE_MARGIN)


def test_bf16_accumulation_and_head_only_training(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    config = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file),
                        train={"steps": None, "epochs": 0.6, "precision": "bf16", "grad_accum_steps": 2,
                               "params": "head", "batch_size": 16})
    result = bind(config, base_model=base_model)
    assert result.step == result.total_steps == 2  # ceil(0.6 epochs * 5 batches / 2 micro-steps)
    assert torch.isfinite(torch.tensor(result.train_loss))
    trained = anybind.load(result.bundle_dir, device="cpu").encoder("toyvec").state_dict()
    from anybind.model import ModalityConfig, build_modality

    initial = build_modality("toyvec", ModalityConfig(encoder="mlp"), base_model.anchor).encoder.state_dict()
    assert torch.equal(trained["backbone.0.weight"], initial["backbone.0.weight"])  # frozen backbone
    assert not torch.equal(trained["head.proj.weight"], initial["head.proj.weight"])


def test_head_keeps_training_after_a_mid_run_validation(toy, toy_data, base_model, tiny_anchor_file,
                                                       tmp_path: Path) -> None:
    """With ``train.params: head`` the validation used to leave the head in eval mode (dropout off) for
    the rest of the run; the loop now restores the training mode after every validation."""
    from anybind.train.config import load_bind_config
    from anybind.train.loop import BindingRun

    config = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file), eval={"every_steps": 1},
                        train={"steps": 3, "params": "head"})
    run = BindingRun(load_bind_config(config), torch.device("cpu"), base_model)
    run.open(resume=False, overwrite=False)
    modes: list[tuple[bool, bool]] = []
    micro_batch = run.micro_batch

    def recording_micro_batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        modes.append((run.encoder.training, run.encoder.head.training))
        return micro_batch(*args, **kwargs)

    run.micro_batch = recording_micro_batch  # type: ignore[method-assign]
    run.train(None)
    assert modes == [(False, True)] * 3  # backbone frozen in eval mode, head training at every step


def test_caches_do_not_change_training(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    common = {"model": str(tiny_anchor_file), "encoder_args": {"dropout": 0.0}, "train": {"steps": 3}}
    cached = bind(toy.recipe(tmp_path / "a", toy_data, **common), base_model=base_model)
    fresh = bind(toy.recipe(tmp_path / "b", toy_data, data={"cache_anchor": False, "manifest": str(toy_data),
                                                             "val_fraction": 0.25}, **common), base_model=base_model)
    assert fresh.train_loss == pytest.approx(cached.train_loss, abs=1e-5)
    inputs_kept = bind(toy.recipe(tmp_path / "c", toy_data, data={"cache_inputs": True}, **common),
                       base_model=base_model)
    assert inputs_kept.train_loss == pytest.approx(cached.train_loss, abs=1e-6)
    assert inputs_kept.metrics == pytest.approx(cached.metrics)


def test_binding_onto_a_bundle_keeps_its_modalities(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    first = bind(toy.recipe(tmp_path / "first", toy_data, model=str(tiny_anchor_file), train={"steps": 2}),
                 base_model=base_model)
    second = bind(toy.recipe(tmp_path / "second", toy_data, modality="toyvec-b", model=str(first.bundle_dir),
                             train={"steps": 2}))
    (first.bundle_dir / "weights" / "toyvec.safetensors").unlink()  # the new bundle holds its own copy
    both = anybind.load(second.bundle_dir, device="cpu")
    assert {"toyvec", "toyvec-b"} <= set(both.modalities)
    inputs = sorted(str(p) for p in (toy_data.parent / "inputs").glob("*.npy"))[:2]
    assert both.embed("toyvec", inputs).shape == both.embed("toyvec-b", inputs).shape == (2, base_model.dim)
