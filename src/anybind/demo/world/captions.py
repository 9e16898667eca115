"""Captions of world objects from the varied templates of the world config."""

from __future__ import annotations

import numpy as np

from anybind.demo.world.config import WorldConfig


def caption(template: str, shape: str, material: str, colour: str, size: str, config: WorldConfig,
            rng: np.random.Generator) -> str:
    """Fill one template (placeholders {shape} {material} {material_noun} {colour} {size}) with
    words of the object, picking synonyms at random."""
    shape_words = config.shapes[shape].words
    material_config = config.materials[material]
    words = {
        "shape": shape_words[int(rng.integers(len(shape_words)))],
        "material": material_config.adjectives[int(rng.integers(len(material_config.adjectives)))],
        "material_noun": material_config.nouns[int(rng.integers(len(material_config.nouns)))],
        "colour": colour,
        "size": size,
    }
    return template.format(**words)


def captions_for(shape: str, material: str, colour: str, size: str, config: WorldConfig,
                 rng: np.random.Generator) -> tuple[str, ...]:
    """`config.captions_per_object` distinct captions of one object (first: the fullest template)."""
    templates = config.caption_templates
    count = min(config.captions_per_object, len(templates))
    chosen = [0] + [int(i) + 1 for i in rng.choice(len(templates) - 1, size=count - 1, replace=False)]
    return tuple(caption(templates[i], shape, material, colour, size, config, rng) for i in chosen)


def class_prompts(kind: str, config: WorldConfig) -> dict[str, str]:
    """Canonical text per class of attribute `kind` ("shape", "material", "colour", "size"),
    e.g. ``{"cube": "a cube", ...}`` or ``{"metal": "a metal object", ...}`` for zero-shot."""
    if kind == "shape":
        return {name: f"a {entry.words[0]}" for name, entry in config.shapes.items()}
    if kind == "material":
        return {name: f"an object made of {entry.nouns[0]}" for name, entry in config.materials.items()}
    if kind == "colour":
        return {name: f"a {name} object" for name in config.colours}
    if kind == "size":
        return {name: f"a {name} object" for name in config.sizes}
    from anybind.errors import InputError

    raise InputError(f"`kind`: expected 'shape', 'material', 'colour' or 'size', got {kind!r}")
