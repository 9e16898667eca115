"""`evaluate`: run one benchmark's published protocol on a model and report metrics with 95% intervals.

Nothing is tuned on the split that is reported: prompts (and, for the point-cloud ``projection``
encoder, view weights) are chosen only when `tune_split` names another split, whose items must
not overlap the reported ones; the choice is recorded in the report's protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from anybind.errors import InputError, InputFileError
from anybind.eval.datasets import (
    ADAPTERS,
    RETRIEVAL_ADAPTERS,
    EvalProtocol,
    H5Item,
    Sample,
    class_names_of,
    imagefolder_classes,
    load_protocol,
    modelnet40_variant,
    read_class_list,
    read_imagefolder,
)
from anybind.eval.metrics import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_interval,
    first_relevant_rank,
    mean_of_groups,
    retrieval_metrics,
    top1_correct,
)
from anybind.zero_shot import class_text_vectors, resolve_templates

if TYPE_CHECKING:
    from anybind.model import BoundModel

REPORT_FORMAT = "anybind.eval"


def _embed_samples(model: BoundModel, modality: str, samples: Sequence[Sample], options: dict[str, Any],
                   batch_size: int | None) -> torch.Tensor:
    """``[N, D]`` vectors of `samples` in order; items with their own loader options are embedded per group."""
    size = batch_size or model.bound(modality).modality.default_batch_size
    out = torch.empty(len(samples), model.dim)
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(sample.options, []).append(index)
    for own, indices in groups.items():
        for start in range(0, len(indices), size):
            chunk = indices[start:start + size]
            items = [samples[i].item.read() if isinstance(samples[i].item, H5Item) else samples[i].item for i in chunk]
            vectors = model.embed(modality, items, batch_size=size, progress=False, **{**options, **dict(own)})
            out[chunk] = vectors.as_subclass(torch.Tensor)
    return out


def _select(samples: list[Sample], split: str, known: Sequence[str], argument: str) -> list[Sample]:
    names = [s.strip() for s in split.split(",")] if split != "all" else list(known)
    names = [f"fold{n}" if n.isdigit() and f"fold{n}" in known else n for n in names]  # --fold 1,2
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"`{argument}`: unknown split(s) {', '.join(map(repr, unknown))}; expected 'all' or one or "
                         f"more (comma-separated) of {', '.join(known)}")
    chosen = [s for s in samples if s.split in names]
    if not chosen:
        raise InputFileError(f"`{argument}`: split {split!r} has no items under the dataset root")
    return chosen


def _refuse_overlap(tune: list[Sample], reported: list[Sample], tune_split: str, split: str) -> None:
    shared = {s.id for s in tune} & {s.id for s in reported}
    if shared:
        raise InputError(f"`tune_split`: {tune_split!r} shares {len(shared)} item(s) with the reported split {split!r} "
                         f"(e.g. {sorted(shared)[0]!r}); tune on a separate validation split, never on what you report")


def _interval(values: np.ndarray, groups: np.ndarray | None, resamples: int, seed: int) -> list[float]:
    return list(bootstrap_interval(values, groups, resamples=resamples, seed=seed))


def _tune_prompts(model: BoundModel, vectors: torch.Tensor, labels: np.ndarray, names: list[str],
                  templates: list[str], batch_size: int | None) -> tuple[list[str], float, float]:
    """Pick the whole template set or one template by accuracy on the tuning split's vectors."""
    candidates = [templates] + ([[t] for t in templates] if len(templates) > 1 else [])
    scores = []
    for candidate in candidates:
        classifier = class_text_vectors(model, names, candidate, batch_size=batch_size)
        scores.append(float(top1_correct((vectors @ classifier.T).numpy(), labels).mean()))
    best = max(range(len(candidates)), key=lambda i: (scores[i], i == 0))
    return candidates[best], scores[best], scores[0]


def _classification(model: BoundModel, protocol: EvalProtocol, root: Path, *, modality: str, split: str,
                    variant: str | None, templates: Sequence[str] | str | None, tune_split: str | None,
                    batch_size: int | None, resamples: int, seed: int) -> dict[str, Any]:
    if protocol.layout == "imagefolder":
        labels_text = imagefolder_classes(root, split)
        names = [n.replace("_", " ") for n in labels_text]
        reported = read_imagefolder(root, labels_text, split)
        tune = read_imagefolder(root, labels_text, tune_split) if tune_split else None
        class_source = "folder names ('_' -> ' ')"
    else:
        class_list = read_class_list(protocol)
        if protocol.layout == "modelnet40":
            variant = modelnet40_variant(root, variant)
        names = class_names_of(protocol, class_list)
        everything = ADAPTERS[protocol.layout](root, protocol, class_list, variant)
        reported = _select(everything, split, protocol.splits, "split")
        tune = _select(everything, tune_split, protocol.splits, "tune_split") if tune_split else None
        class_source = f"configs/classes/{class_list.name}.yaml ({protocol.class_names})"
    if tune is not None:
        if tune_split == split:
            raise InputError(f"`tune_split`: refusing to tune on {split!r}, the split being reported; "
                             "name a separate validation split")
        _refuse_overlap(tune, reported, str(tune_split), split)
    prompts = resolve_templates(model, modality, templates if templates is not None else protocol.templates)
    options = dict(protocol.loader_options)
    tuning: dict[str, Any] = {"tuned": False, "tuned_on": None}
    encoder = model.encoder(modality)
    previous_weights = getattr(encoder, "view_weights", None)
    try:
        if tune is not None:
            tune_labels = np.array([s.label for s in tune])
            # A modality may offer its own held-out tuning (point clouds: view weights and templates);
            # it is found on the registered class, as the engine never imports plugins.
            tune_on_held_out = getattr(type(model.bound(modality).modality), "tune_on_held_out", None)
            if tune_on_held_out is not None and hasattr(encoder, "set_view_weights"):
                items = [s.item.read() if isinstance(s.item, H5Item) else s.item for s in tune]
                result = tune_on_held_out(model, items, tune_labels.tolist(), names, prompts,
                                          test_inputs=[s.item for s in reported if not isinstance(s.item, H5Item)],
                                          **options)
                encoder.set_view_weights(result["view_weights"])  # type: ignore[operator]
                prompts = list(result["templates"])
                tuning = {"tuned": True, "tuned_on": tune_split, "view_weights": result["view_weights"],
                          "tuning_accuracy": result["heldout_accuracy"],
                          "untuned_tuning_accuracy": result["untuned_heldout_accuracy"]}
            else:
                tune_vectors = _embed_samples(model, modality, tune, options, batch_size)
                prompts, accuracy, untuned = _tune_prompts(model, tune_vectors, tune_labels, names, prompts, batch_size)
                tuning = {"tuned": True, "tuned_on": tune_split, "tuning_accuracy": accuracy,
                          "untuned_tuning_accuracy": untuned}
            tuning["num_tuning_items"] = len(tune)
        vectors = _embed_samples(model, modality, reported, options, batch_size)
    finally:
        if previous_weights is not None:
            encoder.view_weights = previous_weights  # type: ignore[assignment]
    classifier = class_text_vectors(model, names, prompts, batch_size=batch_size)
    labels = np.array([s.label for s in reported])
    if isinstance(templates, str):
        template_set = templates
    else:
        template_set = "given" if templates is not None else protocol.templates or "the modality's default"
    correct = top1_correct((vectors @ classifier.T).numpy(), labels).astype(np.float64)
    groups = np.array([s.split for s in reported])
    folds = sorted(set(groups.tolist()), key=lambda g: (len(g), g))
    by_fold = protocol.aggregate == "mean-of-folds" and len(folds) > 1
    value = mean_of_groups(correct, groups) if by_fold else float(correct.mean())
    metric: dict[str, Any] = {
        "name": "top1", "value": value,
        "ci95": _interval(correct, groups if by_fold else None, resamples, seed),
        "n": len(reported),
        "aggregate": "mean of per-fold accuracies" if by_fold else "pooled over items"}
    if len(folds) > 1:
        metric["per_split"] = {fold: float(correct[groups == fold].mean()) for fold in folds}
    return {
        "metrics": [metric],
        "protocol": {
            "split": split, "variant": variant or protocol.default_variant, "items": len(reported),
            "classes": len(names), "class_names": names, "class_names_from": class_source,
            "templates": prompts, "template_set": template_set,
            "loader_options": options, **tuning}}


def _retrieval(model: BoundModel, protocol: EvalProtocol, root: Path, *, split: str, tune_split: str | None,
               batch_size: int | None, resamples: int, seed: int) -> dict[str, Any]:
    if split not in protocol.splits:
        raise InputError(f"`split`: expected one of {', '.join(protocol.splits)} for {protocol.name}, got {split!r}")
    if tune_split is not None:
        raise InputError(f"`tune_split`: {protocol.name} retrieval has nothing to tune (no prompts, no weights)")
    data = RETRIEVAL_ADAPTERS[protocol.layout](root, split)
    if not data.clips:
        raise InputFileError(f"`root`: none of the {len(data.missing)} {split} clips listed in the CSV were found "
                             f"under {str(root)!r}")
    audio = _embed_samples(model, protocol.modality or "audio", data.clips, dict(protocol.loader_options), batch_size)
    text = model.embed("text", data.captions, batch_size=batch_size, progress=False).as_subclass(torch.Tensor)
    caption_clip = np.array(data.caption_clip)
    text_ranks = first_relevant_rank((text @ audio.T).numpy(), [[c] for c in caption_clip])
    audio_ranks = first_relevant_rank((audio @ text.T).numpy(),
                                      [np.flatnonzero(caption_clip == c).tolist() for c in range(len(data.clips))])
    metrics = []
    for direction, ranks in (("text->audio", text_ranks), ("audio->text", audio_ranks)):
        for name, values in retrieval_metrics(ranks).items():
            metrics.append({"name": f"{direction} {name}", "value": float(values.mean()),
                            "ci95": _interval(values, None, resamples, seed), "n": len(values),
                            "aggregate": "pooled over queries"})
    return {"metrics": metrics,
            "protocol": {"split": split, "clips": len(data.clips), "captions": len(data.captions),
                         "missing_clips": len(data.missing), "tuned": False, "tuned_on": None,
                         "map_at_10": "LAION-CLAP: 1/(rank+1) of the first relevant item if within the top 10"}}


def evaluate(dataset: str, root: str | Path, model: BoundModel | str = "tiny", *, split: str | None = None,
             variant: str | None = None, modality: str | None = None, templates: Sequence[str] | str | None = None,
             tune_split: str | None = None, batch_size: int | None = None, compare: bool | str = False,
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Evaluate `model` on `dataset` (a name in ``configs/eval/datasets``) stored as published under `root`.

    Args:
        dataset: ``esc50``, ``urbansound8k``, ``modelnet40``, ``scanobjectnn``, ``nyu-depth-v2``,
            ``sunrgbd``, ``audiocaps``, ``clotho`` or ``imagefolder``.
        root: the dataset's top folder, laid out as distributed (see each protocol's ``layout``).
        model: a loaded `BoundModel`, or a spec for `anybind.load`.
        split: the reported split: a split/fold name, several joined by commas, or ``"all"``
            (default: the protocol's).
        variant: ScanObjectNN variant (``OBJ_ONLY``, ``OBJ_BG``, ``PB_T50_RS``).
        modality: the inputs' modality (ImageFolder only; others use the protocol's).
        templates: prompt templates or a template-set name (default: the protocol's).
        tune_split: choose prompts (and point-cloud view weights) on this split; it must not
            share items with `split`.
        compare: add the published numbers of ``configs/eval/published.yaml`` for this model
            (True: matched by weights file / preset name; a string: that published model name).
        resamples / seed: bootstrap resamples and seed of the 95% intervals.

    Returns:
        A JSON-ready dict: ``format``, ``dataset``, ``model``, ``anchor``, ``modality``, ``task``,
        ``protocol`` (split, classes, templates, preprocessing, encoder, tuning, sources),
        ``metrics`` (``name``, ``value``, ``ci95`` [low, high], ``n``, per split), and
        ``published`` when `compare` is set.
    """
    import anybind
    from anybind.config import to_dict

    protocol = load_protocol(dataset)
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"`root`: expected the {protocol.title} folder, got {str(folder)!r} (not a folder)")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise InputError(f"`resamples`: expected a positive integer, got {resamples!r}")
    if isinstance(model, (str, Path)):
        spec = str(model)
        model = anybind.load(model, device=device)
    else:
        spec = model.config.name or "model"
    if protocol.modality is None:
        if modality is None:
            raise InputError(f"`modality`: {protocol.name} holds any modality; name it (e.g. 'image', 'audio')")
    elif modality not in (None, protocol.modality):
        raise InputError(f"`modality`: {protocol.name} is {protocol.modality}, got {modality!r}")
    modality = modality or protocol.modality
    assert modality is not None
    split = split or protocol.default_split
    if protocol.task == "classification":
        result = _classification(model, protocol, folder, modality=modality, split=split, variant=variant,
                                 templates=templates, tune_split=tune_split, batch_size=batch_size,
                                 resamples=resamples, seed=seed)
    else:
        result = _retrieval(model, protocol, folder, split=split, tune_split=tune_split, batch_size=batch_size,
                            resamples=resamples, seed=seed)
    bound = model.bound(modality)
    preprocess = bound.modality.preprocess
    result["protocol"].update({
        "encoder": bound.config.encoder or bound.modality.default_encoder,
        "encoder_args": to_dict(bound.encoder.config) if hasattr(bound.encoder.config, "__dataclass_fields__") else {},
        "preprocess": to_dict(preprocess) if preprocess is not None and hasattr(preprocess, "__dataclass_fields__") else None,
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "percentile, 95%"},
        "reference": protocol.reference, "download": protocol.download})
    report = {"format": REPORT_FORMAT, "version": 1, "dataset": protocol.name, "title": protocol.title,
              "root": str(folder), "model": spec, "anchor": model.anchor_key, "modality": modality,
              "task": protocol.task, **result}
    if compare:
        from anybind.eval.report import published_for

        report["published"] = published_for(model, protocol.name, split, compare)
    return report
