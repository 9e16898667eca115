"""Honest tuning of zero-shot 3D classification: view weights and templates from a held-out split.

PointCLIP V1/V2 searched view weights and prompts on the test labels, so their reported numbers
cannot be reproduced zero-shot. Here the default protocol is untuned: uniform view weights and the
fixed templates of ``configs/templates/pointcloud.yaml``. `tune_view_weights` is the only tuning
path; it sees a held-out split (never the test split), refuses inputs shared with `test_inputs`,
and labels its result ``"tuned": True, "tuned_on": "held-out split"`` so reports can say so.

Apply a result with ``model.encoder("pointcloud").set_view_weights(result["view_weights"])`` and
``model.zero_shot(..., templates=result["templates"])``, and report the accuracy as tuned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from anybind.config import load_templates
from anybind.errors import InputError

if TYPE_CHECKING:
    from anybind.model import BoundModel

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)  # candidate relative weights per view
SEARCH_ROUNDS = 2  # passes of coordinate ascent over the views


def _label_indices(labels: Sequence[Any], class_names: list[str], count: int) -> torch.Tensor:
    if len(labels) != count:
        raise InputError(f"`heldout_labels`: expected {count} labels (one per held-out input), got {len(labels)}")
    out = []
    for index, label in enumerate(labels):
        if isinstance(label, str):
            if label not in class_names:
                raise InputError(f"`heldout_labels[{index}]`: {label!r} is not one of `class_names`")
            out.append(class_names.index(label))
        elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(class_names):
            out.append(label)
        else:
            raise InputError(f"`heldout_labels[{index}]`: expected a class name or an index in "
                             f"[0, {len(class_names) - 1}], got {label!r}")
    return torch.tensor(out)


def _check_disjoint(heldout: Sequence[Any], test: Sequence[Any] | None) -> None:
    if test is None:
        return
    def paths(items: Sequence[Any]) -> set[str]:
        return {str(Path(i).resolve()) for i in items if isinstance(i, (str, Path))}
    shared = paths(heldout) & paths(test)
    if shared:
        raise InputError(f"`heldout_inputs`: {len(shared)} file(s) are also in `test_inputs` (e.g. "
                         f"{sorted(shared)[0]!r}); tuning must not see the test split")


def _text_classifier(model: BoundModel, templates: Sequence[str], class_names: list[str]) -> torch.Tensor:
    """``[C, D]`` unit-norm class vectors: the mean of the templates' text embeddings per class."""
    prompts = [t.format(c) for c in class_names for t in templates]
    vectors = model.embed("text", prompts).as_subclass(torch.Tensor).view(len(class_names), len(templates), -1)
    return F.normalize(vectors.mean(dim=1), dim=-1)


def _accuracy(features: torch.Tensor, weights: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor) -> float:
    fused = F.normalize(torch.einsum("nvd,v->nd", features, weights), dim=-1)
    return float(((fused @ classifier.T).argmax(dim=1) == labels).float().mean())


def tune_view_weights(model: BoundModel, heldout_inputs: Sequence[Any], heldout_labels: Sequence[Any],
                      class_names: list[str], templates: Sequence[str] | None = None, *,
                      test_inputs: Sequence[Any] | None = None, batch_size: int = 16,
                      **options: Any) -> dict[str, Any]:
    """Choose view weights and a template set for zero-shot 3D on a held-out split (never test).

    Templates: the whole set (`templates`, default the modality's config set) and each single
    template are scored with uniform weights; the best is kept. View weights: coordinate ascent
    over `WEIGHT_GRID` per view, `SEARCH_ROUNDS` passes, keeping the current value on ties.

    Args:
        model: a model whose ``pointcloud`` encoder is ``projection``.
        heldout_inputs / heldout_labels: held-out clouds and their labels (names or indices).
        class_names: the C class names.
        test_inputs: optional test files; an overlap with `heldout_inputs` raises `InputError`.
        options: loader options (``up_axis="y"``...).

    Returns:
        ``{"view_weights": [V floats summing to 1], "templates": [...], "heldout_accuracy": float,
        "untuned_heldout_accuracy": float, "num_heldout": N, "tuned": True,
        "tuned_on": "held-out split"}``.
    """
    from anybind.modalities.pointcloud.encoders import ProjectionEncoder

    encoder = model.encoder("pointcloud")
    if not isinstance(encoder, ProjectionEncoder):
        raise InputError(f"`model`: view weights apply to the 'projection' pointcloud encoder, got "
                         f"{type(encoder).__name__}")
    class_names = list(class_names)
    if len(class_names) < 2 or not all(isinstance(c, str) and c.strip() for c in class_names):
        raise InputError(f"`class_names`: expected at least 2 non-empty strings, got {class_names!r}")
    bound = model.bound("pointcloud")
    items = bound.modality.as_items(heldout_inputs)
    labels = _label_indices(list(heldout_labels), class_names, len(items))
    _check_disjoint(items, test_inputs)
    template_set = list(templates) if templates is not None else list(load_templates(
        bound.config.templates or bound.modality.default_templates))
    with torch.inference_mode():
        chunks = [encoder.view_features(bound.modality.load(items[s:s + batch_size], **options).to(model.device)).cpu()
                  for s in range(0, len(items), batch_size)]
    features = torch.cat(chunks).float()
    uniform = torch.full((encoder.num_views,), 1.0 / encoder.num_views)
    candidates = [template_set] + ([[t] for t in template_set] if len(template_set) > 1 else [])
    with torch.inference_mode():
        classifiers = [_text_classifier(model, c, class_names) for c in candidates]
    scores = [_accuracy(features, uniform, c, labels) for c in classifiers]
    best = max(range(len(candidates)), key=lambda i: (scores[i], i == 0))
    classifier, untuned = classifiers[best], scores[0]
    weights, accuracy = torch.ones(encoder.num_views), scores[best]  # relative weights, 1 = uniform
    for _ in range(SEARCH_ROUNDS):
        for view in range(encoder.num_views):
            for value in WEIGHT_GRID:
                trial = weights.clone()
                trial[view] = value
                if float(trial.sum()) <= 0:
                    continue
                score = _accuracy(features, trial, classifier, labels)
                if score > accuracy:
                    weights, accuracy = trial, score
    weights = weights / weights.sum()
    return {"view_weights": [round(float(w), 6) for w in weights], "templates": candidates[best],
            "heldout_accuracy": accuracy, "untuned_heldout_accuracy": untuned, "num_heldout": len(items),
            "tuned": True, "tuned_on": "held-out split"}
