"""Evaluate a bundle on the world's test split: emergent zero-shot, cross-modal retrieval, and
the same numbers for an ablation whose bound encoders keep their untrained (random-init) weights.

Nothing here is tuned on test labels: templates come from ``configs/templates/world-*.yaml``
and every number is computed once on the held-out test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anybind.config import load_templates
from anybind.demo.bundle import world_dir_of
from anybind.model import BUNDLE_FILE, BoundModel

SEARCH_QUERIES = ("a ball", "a metallic clang", "something to drink coffee from", "a wooden table")


@dataclass
class Metric:
    """One row of the results table."""

    task: str  # e.g. "audio→text shape (zero-shot)"
    value: float  # the trained bundle's number
    chance: float  # what guessing gets
    untrained: float | None  # the same number with the bound encoder untrained (None: not applicable)
    emergent: bool = False  # the modality never saw text in training


@dataclass
class Evaluation:
    """Everything `anybind demo` prints and reports."""

    metrics: list[Metric]
    searches: list[dict[str, Any]] = field(default_factory=list)  # query, modality, hits
    test_records: list[dict[str, Any]] = field(default_factory=list)  # the test objects (paths, labels)
    info: dict[str, Any] = field(default_factory=dict)  # the bundle's provenance (timings, val metrics)


def untrained_model(bundle_dir: Path, modalities: tuple[str, ...], model: BoundModel | None = None) -> BoundModel:
    """The bundle with `modalities` rebuilt from their random init (weights dropped): the ablation.

    With `model` (the loaded bundle) its anchor is shared instead of loaded a second time.
    """
    import anybind
    from anybind.model import parse_model_config
    from anybind.train.bundle import portable_anchor_spec

    config = json.loads((bundle_dir / BUNDLE_FILE).read_text())
    config["anchor"] = portable_anchor_spec(config["anchor"], bundle_dir)
    for name, entry in config["modalities"].items():
        if name in modalities:
            entry.pop("weights", None)
        elif entry.get("weights"):
            entry["weights"] = str((bundle_dir / entry["weights"]).resolve())
    if model is None:
        return anybind.load(config, device="cpu")
    return BoundModel(model.anchor, parse_model_config(config, f"ablation of {str(bundle_dir)!r}"), base_dir=bundle_dir)


def _recall_at_1(queries: torch.Tensor, gallery: torch.Tensor) -> float:
    """Share of queries whose paired gallery item (same row) ranks first."""
    best = (queries @ gallery.T).argmax(dim=1)
    return float((best == torch.arange(len(queries))).float().mean())


TextCache = dict[tuple[str, tuple[str, ...], tuple[str, ...]], torch.Tensor]


def _class_vectors(model: BoundModel, classes: list[str], templates: list[str], cache: TextCache) -> torch.Tensor:
    """``[C, D]`` class text vectors, computed once per anchor, classes and templates (kept in `cache`)."""
    from anybind.zero_shot import class_text_vectors

    key = (model.anchor_key, tuple(classes), tuple(templates))
    if key not in cache:
        cache[key] = class_text_vectors(model, classes, templates)
    return cache[key]


def _zero_shot_accuracy(model: BoundModel, vectors: torch.Tensor, modality: str, classes: list[str],
                        templates: list[str], labels: torch.Tensor, cache: TextCache) -> float:
    text = _class_vectors(model, classes, templates, cache)
    return float(((vectors @ text.T).argmax(dim=1) == labels).float().mean())


def _text_to_items_precision(model: BoundModel, vectors: torch.Tensor, classes: list[str], templates: list[str],
                             labels: torch.Tensor, cache: TextCache, k: int = 10) -> float:
    """Mean over classes of the share of the top-k items retrieved by the class's text that have the class."""
    text = _class_vectors(model, classes, templates, cache)
    top = (text @ vectors.T).topk(min(k, len(vectors)), dim=1).indices
    return float((labels[top] == torch.arange(len(classes)).unsqueeze(1)).float().mean())


def _embed_all(model: BoundModel, records: list[dict[str, Any]], modalities: tuple[str, ...],
               batch_size: int | None = None) -> dict[str, torch.Tensor]:
    return {m: model.embed(m, [r[m] for r in records], batch_size=batch_size, progress=False).as_subclass(torch.Tensor)
            for m in modalities}


def _modality_metrics(model: BoundModel, vectors: dict[str, torch.Tensor], records: list[dict[str, Any]],
                      world: dict[str, Any], recipe_eval: dict[str, Any], cache: TextCache) -> dict[str, float]:
    shape_classes, material_classes = world["classes"]["shape"], world["classes"]["material"]
    shape_words = world.get("shape_words", shape_classes)
    shape_labels = torch.tensor([shape_classes.index(r["shape"]) for r in records])
    material_labels = torch.tensor([material_classes.index(r["material"]) for r in records])
    shape_templates = list(load_templates(recipe_eval.get("shape_templates", "world-shape")))
    material_templates = list(load_templates(recipe_eval.get("material_templates", "world-material")))
    out: dict[str, float] = {}
    for modality in ("audio", "pointcloud", "depth", "image"):
        if modality not in vectors:
            continue
        out[f"{modality}→text shape"] = _zero_shot_accuracy(model, vectors[modality], modality, shape_words,
                                                            shape_templates, shape_labels, cache)
        out[f"{modality}→text material"] = _zero_shot_accuracy(model, vectors[modality], modality, material_classes,
                                                               material_templates, material_labels, cache)
        out[f"text→{modality} shape"] = _text_to_items_precision(model, vectors[modality], shape_words,
                                                                 shape_templates, shape_labels, cache)
        out[f"text→{modality} material"] = _text_to_items_precision(model, vectors[modality], material_classes,
                                                                    material_templates, material_labels, cache)
        if modality != "image":
            out[f"{modality}→image"] = _recall_at_1(vectors[modality], vectors["image"])
    return out


def _split_vectors(bundle_dir: Path, split: str, model: BoundModel, ablation: BoundModel,
                   records: list[dict[str, Any]], bound: tuple[str, ...], batch_size: int | None = None
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``[N, D]`` vectors of the split's objects per modality, from the bundle and from the ablation.

    Kept beside the bundle in ``eval-<split>-vectors.safetensors`` (tagged with the sha256 of
    ``bundle.json``, so a rebuilt bundle never reads a stale file): a cached rerun of the demo
    then embeds only the prompts.
    """
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from anybind.atomic import atomic_save_safetensors

    path = bundle_dir.parent / f"eval-{split}-vectors.safetensors"
    tag = hashlib.sha256((bundle_dir / BUNDLE_FILE).read_bytes()).hexdigest()
    expected = {f"trained/{m}" for m in ("image",) + bound} | {f"untrained/{m}" for m in bound}
    try:
        with safe_open(str(path), framework="pt") as handle:
            fresh = (handle.metadata() or {}).get("bundle_sha256") == tag and set(handle.keys()) == expected
        tensors = load_file(str(path)) if fresh else None
    except (OSError, SafetensorError):
        tensors = None
    if tensors is None or any(len(t) != len(records) for t in tensors.values()):
        trained = _embed_all(model, records, ("image",) + bound, batch_size)
        untrained = {"image": trained["image"], **_embed_all(ablation, records, bound, batch_size)}
        tensors = {**{f"trained/{m}": v for m, v in trained.items()},
                   **{f"untrained/{m}": untrained[m] for m in bound}}
        try:
            atomic_save_safetensors(path, tensors, metadata={"bundle_sha256": tag})
        except OSError:  # a read-only bundle location: evaluate without the cache
            pass
    trained = {m: tensors[f"trained/{m}"] for m in ("image",) + bound}
    return trained, {"image": trained["image"], **{m: tensors[f"untrained/{m}"] for m in bound}}


def evaluate_bundle(bundle_dir: str | Path, split: str = "test", searches: bool = True, *,
                    device: str | torch.device | None = "cpu", batch_size: int | None = None) -> Evaluation:
    """Evaluate the default bundle in `bundle_dir` on its world's `split` (see module docstring),
    embedding on `device` (None: CUDA when available) in batches of `batch_size` (None: per modality)."""
    import anybind
    from anybind.demo.world import read_objects

    bundle_dir = Path(bundle_dir)
    info = json.loads((bundle_dir / BUNDLE_FILE).read_text()).get("info", {})
    world_dir = world_dir_of(bundle_dir)
    world = json.loads((world_dir / "world.json").read_text())
    records = read_objects(world_dir / f"{split}.jsonl")
    model = anybind.load(bundle_dir, device=device)
    bound = tuple(m for m in ("audio", "pointcloud", "depth") if m in model.modalities)
    recipe_eval = info.get("recipe_config", {}).get("eval", {})

    ablation = untrained_model(bundle_dir, bound, model)
    trained_vectors, ablation_vectors = _split_vectors(bundle_dir, split, model, ablation, records, bound, batch_size)
    cache: TextCache = {}  # the ablation shares the anchor, hence the class text vectors
    trained = _modality_metrics(model, trained_vectors, records, world, recipe_eval, cache)
    untrained = _modality_metrics(ablation, ablation_vectors, records, world, recipe_eval, cache)

    n_shapes, n_materials = len(world["classes"]["shape"]), len(world["classes"]["material"])
    chance = {"shape": 1 / n_shapes, "material": 1 / n_materials, "image": 1 / len(records)}
    metrics = []
    for task, value in trained.items():
        kind = "image" if task.endswith("→image") else task.rsplit(" ", 1)[1]
        modality = task.split("→")[0] if not task.startswith("text→") else task.split("→")[1].split(" ")[0]
        label = task + (" R@1" if kind == "image" else " P@10" if task.startswith("text→") else " accuracy")
        metrics.append(Metric(task=label, value=value, chance=chance[kind],
                              untrained=None if modality == "image" else untrained.get(task),
                              emergent=modality in ("audio", "pointcloud", "depth") and "text" in task))
    evaluation = Evaluation(metrics=metrics, test_records=records, info=info)
    if searches:
        evaluation.searches = _example_searches(model, records, trained_vectors)
    return evaluation


def _example_searches(model: BoundModel, records: list[dict[str, Any]],
                      vectors: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """A few any-to-any searches over the test objects, with their top 3 hits."""
    from anybind.index import Index

    index = Index(model)
    for modality, matrix in vectors.items():
        index.add(matrix, ids=[f"{modality}:{r['id']}" for r in records], modality=modality,
                  metadata=[{"path": str(r[modality]), "caption": r["caption"]} for r in records])
    out = []
    text = model.embed("text", list(SEARCH_QUERIES), progress=False)
    for number, query in enumerate(SEARCH_QUERIES):
        for target in ("image", "audio"):
            if target in vectors:
                result = index.search(text[number:number + 1], k=3, modality=target)
                out.append({"query": query, "query_modality": "text", "target": target, "hits": result.hits(0)})
    for source in ("audio", "pointcloud", "depth"):
        if source in vectors:
            result = index.search(vectors[source][:1], k=3, modality="image")
            out.append({"query": records[0][source], "query_modality": source, "target": "image",
                        "query_caption": records[0]["caption"], "hits": result.hits(0)})
    return out
