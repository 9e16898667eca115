"""Zero-shot classification: class names -> prompt templates -> anchor text vectors -> softmax of cosines.

Each class's text vector is the re-normalized mean of its prompts' vectors (CLIP's prompt
ensembling, Radford et al. 2021, section 3.1.4). Probabilities are
``softmax(logit_scale(modality) * cos(input, class))``; the logit scale is the modality's own
(or the anchor's) and is never multiplied into the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from anybind.config import load_named, load_templates
from anybind.embedder import Embedder
from anybind.errors import InputError
from anybind.modality import describe



@dataclass(frozen=True)
class ClassList:
    """A dataset's classes, shipped as data in ``configs/classes/<name>.yaml``."""

    name: str  # the list's name, e.g. "esc50"
    modality: str  # the modality the dataset is usually classified in
    labels: tuple[str, ...]  # the dataset's own label strings, in its class-index order
    classes: tuple[str, ...]  # the same classes as plain words for prompt templates


def load_class_list(name: str) -> ClassList:
    """The class list ``configs/classes/<name>.yaml`` (e.g. ``"esc50"``, ``"modelnet40"``)."""
    class_list = load_named(ClassList, "classes", name, "class list")
    if len(class_list.labels) != len(class_list.classes) or not class_list.classes:
        raise InputError(f"class list {name!r}: `labels` and `classes` must be non-empty and of equal length, "
                         f"got {len(class_list.labels)} and {len(class_list.classes)}")
    return class_list


def resolve_class_names(class_names: Sequence[str] | str) -> list[str]:
    """A list of class names as given, or the ``classes`` of a shipped class list named by a string."""
    if isinstance(class_names, str):
        return list(load_class_list(class_names).classes)
    if not isinstance(class_names, Sequence) or not class_names:
        raise InputError(f"`class_names`: expected a non-empty list of names or a class-list name, "
                         f"got {describe(class_names)}")
    for number, name in enumerate(class_names):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"`class_names[{number}]`: expected a non-empty string, got {name!r}")
    duplicates = sorted({name for name in class_names if list(class_names).count(name) > 1})
    if duplicates:
        raise InputError(f"`class_names`: duplicate names {duplicates}")
    return list(class_names)


def resolve_templates(model: Embedder, modality: str, templates: Sequence[str] | str | Path | None) -> list[str]:
    """Templates as given, a template-set name or file (``.yaml``/``.json``/``.txt``, see
    `anybind.config.load_templates`), or the modality's default set (config, then class)."""
    if templates is None:
        bound = model.bound(modality)
        templates = bound.config.templates or bound.modality.default_templates
    if isinstance(templates, (str, Path)):
        return list(load_templates(templates))
    if not isinstance(templates, Sequence) or not templates:
        raise InputError(f"`templates`: expected a non-empty list of strings with one '{{}}' or a template-set "
                         f"name, got {describe(templates)}")
    for number, template in enumerate(templates):
        if not isinstance(template, str) or _replacement_fields(template) != [""]:
            raise InputError(f"`templates[{number}]`: expected a string with exactly one '{{}}' and no other "
                             f"fields (write a literal brace as '{{{{' or '}}}}'), got {template!r}")
    return list(templates)


def class_text_vectors(model: Embedder, class_names: Sequence[str], templates: Sequence[str],
                       batch_size: int | None = None) -> torch.Tensor:
    """``[C, D]`` unit-norm anchor text vectors: each class's prompt vectors averaged, re-normalized."""
    prompts = [template.format(name) for name in class_names for template in templates]
    vectors = model.embed("text", prompts, batch_size=batch_size).as_subclass(torch.Tensor)
    per_class = vectors.reshape(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(per_class, dim=-1)


def zero_shot(model: Embedder, modality: str, inputs: Any, class_names: Sequence[str] | str,
              templates: Sequence[str] | str | None = None, *, batch_size: int | None = None,
              **options: Any) -> torch.Tensor:
    """Zero-shot class probabilities ``[N, C]`` (rows sum to 1) of `inputs` of `modality`.

    `class_names` is a list or a shipped class-list name (``"esc50"``, ``"modelnet40"``,
    ``"nyu-depth-v2-scenes"``); `templates` a list with one ``{}`` each, a template-set name in
    ``configs/templates/``, or None for the modality's default. `options` go to the loader.
    """
    names = resolve_class_names(class_names)
    prompts = resolve_templates(model, modality, templates)
    class_vectors = class_text_vectors(model, names, prompts, batch_size=batch_size)
    vectors = model.embed(modality, inputs, batch_size=batch_size, **options).as_subclass(torch.Tensor)
    logits = model.logit_scale(modality) * vectors @ class_vectors.T
    return logits.softmax(dim=-1)


def _replacement_fields(template: str) -> list[str] | None:
    """The `str.format` fields of `template` as written (``"{}"`` -> ``[""]``), or None when malformed."""
    import string

    try:
        return [name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                for _, name, spec, conversion in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return None

