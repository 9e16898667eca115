"""The ``projection`` encoder (view fusion, adapter, flags) and honest zero-shot tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from anybind.errors import ConfigError, InputError
from anybind.model import build_modality
from anybind.modalities.pointcloud import ProjectionEncoder, tune_view_weights


def clouds(count: int = 2, seed: int = 0) -> torch.Tensor:
    points = torch.randn(count, 1024, 3, generator=torch.Generator().manual_seed(seed))
    return points / points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def encoder(tiny_model, **encoder_args) -> ProjectionEncoder:  # type: ignore[no-untyped-def]
    built = build_modality("pointcloud", {"encoder": "projection", "encoder_args": encoder_args}, tiny_model.anchor)
    return built.encoder  # type: ignore[return-value]


@pytest.mark.parametrize("method, views", [("realistic", 10), ("pointclip", 6)])
def test_view_features_and_uniform_fusion(tiny_model, method: str, views: int) -> None:  # type: ignore[no-untyped-def]
    model = encoder(tiny_model, method=method)
    batch = clouds()
    with torch.no_grad():
        per_view = model.view_features(batch)
        fused = model(batch)
    assert per_view.shape == (2, views, tiny_model.dim)
    torch.testing.assert_close(per_view.norm(dim=-1), torch.ones(2, views))
    torch.testing.assert_close(fused, per_view.mean(dim=1))


def test_view_weights_select_and_renormalize(tiny_model) -> None:  # type: ignore[no-untyped-def]
    batch = clouds()
    one_hot = encoder(tiny_model, method="pointclip", view_weights=[0, 0, 3, 0, 0, 0])
    subset = encoder(tiny_model, method="pointclip", views=[2])
    with torch.no_grad():
        torch.testing.assert_close(one_hot(batch), subset(batch))
        one_hot.set_view_weights([1, 0, 0, 0, 0, 0])
        torch.testing.assert_close(one_hot(batch), one_hot.view_features(batch)[:, 0])
    with pytest.raises(InputError, match=r"`weights`: expected 6 non-negative numbers"):
        one_hot.set_view_weights([1, 2])


def test_clip_normalization_is_a_flag(tiny_model) -> None:  # type: ignore[no-untyped-def]
    batch = clouds(1)
    raw, normalized = encoder(tiny_model), encoder(tiny_model, normalize_pixels=True)
    pixels = raw.render(batch)
    assert pixels.shape == (10, 3, 64, 64) and float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    mean = torch.tensor(tiny_model.anchor.image_preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny_model.anchor.image_preprocess.std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalized.render(batch), (pixels - mean) / std)


def test_untrained_adapter_is_zero_shot_and_trainable(tiny_model) -> None:  # type: ignore[no-untyped-def]
    batch = clouds()
    plain, adapted = encoder(tiny_model), encoder(tiny_model, adapter=True, adapter_hidden=16)
    with torch.no_grad():
        torch.testing.assert_close(adapted(batch), plain(batch))
    assert sum(p.numel() for p in plain.parameters()) == 0 and plain.head is None
    assert adapted.head_parameters() and all(p.requires_grad for p in adapted.parameters())
    assert set(adapted.state_dict()) == {f"head.{k}" for k in adapted.head.state_dict()}  # no anchor weights
    adapted.train()
    loss = F.cosine_similarity(adapted(batch), torch.randn(2, tiny_model.dim)).sum()
    loss.backward()
    assert float(adapted.head.residual.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_model.anchor.parameters())


@pytest.mark.parametrize("encoder_args, message", [
    ({"views": [0, 10]}, r"`views` must be view indices in \[0, 9\] for method 'realistic', got \[0, 10\]"),
    ({"method": "pointclip", "view_weights": [1, 1]}, r"`view_weights` must be 6 non-negative numbers"),
    ({"view_weights": [-1] + [1] * 9}, r"`view_weights` must be 10 non-negative numbers"),
    ({"method": "pointclip2"}, r"`method`: expected one of 'pointclip', 'realistic', got 'pointclip2'"),
    ({"adaptor": True}, r"unknown key\(s\) 'adaptor' \(did you mean 'adapter'\?\)"),
])
def test_bad_encoder_args(tiny_model, encoder_args: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        encoder(tiny_model, **encoder_args)


def shapes(folder) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    """Two boxes and two spheres as files, with labels."""
    paths, labels = [], []
    for index, (mesh, label) in enumerate([(trimesh.creation.box(), "box"), (trimesh.creation.icosphere(1), "ball"),
                                           (trimesh.creation.box(extents=(1, 2, 1)), "box"),
                                           (trimesh.creation.icosphere(2), "ball")]):
        path = folder / f"shape{index}.off"
        mesh.export(path)
        paths.append(path)
        labels.append(label)
    return paths, labels


def heldout_accuracy(model, paths, labels, view_weights, templates) -> float:  # type: ignore[no-untyped-def]
    """Zero-shot accuracy over ["box", "ball"] with the given view weights and templates (weights restored)."""
    encoder = model.encoder("pointcloud")
    saved = encoder.view_weights.clone()
    try:
        encoder.set_view_weights(view_weights)
        predicted = model.zero_shot("pointcloud", paths, ["box", "ball"], templates=templates).argmax(dim=1)
    finally:
        encoder.set_view_weights(saved)
    return float((predicted == torch.tensor([["box", "ball"].index(label) for label in labels])).float().mean())


def test_tuning_uses_heldout_split_and_reports_itself(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths, labels = shapes(tmp_path)
    result = tune_view_weights(tiny_model, paths, labels, ["box", "ball"], templates=["a {}.", "a 3D {}."])
    assert result["tuned"] is True and result["tuned_on"] == "held-out split" and result["num_heldout"] == 4
    assert len(result["view_weights"]) == 10 and sum(result["view_weights"]) == pytest.approx(1.0, abs=1e-5)
    # The reported accuracies are what the returned settings (and the untuned ones) score on the split.
    assert heldout_accuracy(tiny_model, paths, labels, result["view_weights"], result["templates"]) == \
        pytest.approx(result["heldout_accuracy"])
    assert heldout_accuracy(tiny_model, paths, labels, [0.1] * 10, ["a {}.", "a 3D {}."]) == \
        pytest.approx(result["untuned_heldout_accuracy"])
    assert result["templates"] in (["a {}.", "a 3D {}."], ["a {}."], ["a 3D {}."])
    with pytest.raises(InputError, match=r"`heldout_inputs`: 1 file\(s\) are also in `test_inputs`"):
        tune_view_weights(tiny_model, paths, labels, ["box", "ball"], test_inputs=[paths[0]])
    with pytest.raises(InputError, match=r"`heldout_labels\[1\]`: 'cube' is not one of `class_names`"):
        tune_view_weights(tiny_model, paths, ["box", "cube", "box", "ball"], ["box", "ball"])
    with pytest.raises(InputError, match=r"`heldout_labels`: expected 4 labels"):
        tune_view_weights(tiny_model, paths, ["box"], ["box", "ball"])


def test_zero_shot_on_files_with_pointcloud_templates(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths, _ = shapes(tmp_path)
    probabilities = tiny_model.zero_shot("pointcloud", paths, ["box", "ball", "lamp"])
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(dim=1).numpy(), np.ones(4), rtol=1e-5)
