"""The LiT trainer's data: images as normalized pixels (through the registered image modality and the
decode-once input cache), captions grouped per image, frozen caption vectors (cached on disk), the
per-step augmentation, and the retrieval metrics of a trained tower.

Everything anchor-specific goes through `anybind.anchor.TrainableTowerAnchor`; the image modality
is looked up in the registry (the engine imports no plugin).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anybind.anchor import AnchorIdentity, TrainableTowerAnchor
from anybind.config import to_dict
from anybind.errors import InputError
from anybind.progress import progress_bar
from anybind.registry import get_modality
from anybind.train.anchor_cache import AnchorVectorCache, partner_key
from anybind.train.input_cache import FileKeys
from anybind.train.run import open_input_cache

LOAD_CHUNK = 256  # images per load call when loading a whole split


def check_images(images: np.ndarray | torch.Tensor, argument: str) -> torch.Tensor:
    """`images` as a uint8 ``[N, H, W, 3]`` tensor; raise `InputError` naming `argument` otherwise."""
    array = torch.as_tensor(np.asarray(images))
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != torch.uint8:
        raise InputError(f"`{argument}`: expected uint8 [N, H, W, 3], got {array.dtype} {tuple(array.shape)}")
    return array


def image_modality(anchor: Any) -> Any:
    """The registered ``image`` modality on `anchor`'s image preprocessing (its `load` gives
    ``[B, 3, S, S]`` normalized pixels from files, arrays or ``[0, 1]`` float tensors)."""
    return get_modality("image")(anchor.image_preprocess, anchor)


def image_pixels(images: torch.Tensor, anchor: Any) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalized float ``[N, 3, S, S]`` exactly as the image modality does."""
    modality = image_modality(anchor)
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    return torch.cat([modality.load([chunk]) for chunk in pixels.split(512)])


def image_loader(anchor: Any, *, cache: bool, cache_dir: str | None = None) -> Callable[[list[Path]], torch.Tensor]:
    """Image files -> ``[B, 3, S, S]`` normalized pixels: the image modality's loader, with `cache`
    through the decode-once input cache (memory + on-disk store keyed by the image preprocessing)."""
    import anybind

    modality = image_modality(anchor)
    if not cache:
        return modality.load
    description = {"modality": "image", "preprocess": to_dict(anchor.image_preprocess), "anybind": anybind.__version__}
    return open_input_cache(modality.load, split=modality.split_batch, join=modality.join_batches, key_of=FileKeys(),
                            description=description, folder=cache_dir)


def load_all(load: Callable[[list[Path]], torch.Tensor], paths: Sequence[Path], progress: bool = False
             ) -> torch.Tensor:
    """``[N, 3, S, S]`` pixels of every path, loaded in chunks of `LOAD_CHUNK`."""
    chunks = []
    for start in progress_bar(range(0, len(paths), LOAD_CHUNK), desc="load images", unit="chunk",
                              disable=not progress):
        chunks.append(load(list(paths[start:start + LOAD_CHUNK])))
    return torch.cat(chunks)


@dataclass
class TensorRows:
    """`MicroBatches` loader over images already in memory: row indices -> ``[b, 3, S, S]`` pixels."""

    pixels: torch.Tensor

    def __call__(self, rows: list[int]) -> torch.Tensor:
        return self.pixels[torch.as_tensor(rows, dtype=torch.int64)]


def caption_index(captions: Sequence[Sequence[str] | str]) -> tuple[list[str], list[np.ndarray]]:
    """The unique captions and, per image, the indices of its captions into them (validated)."""
    unique: dict[str, int] = {}
    per_image = []
    for index, options in enumerate(captions):
        if isinstance(options, str):
            options = [options]
        if not options or not all(isinstance(t, str) and t.strip() for t in options):
            raise InputError(f"`captions[{index}]`: expected a non-empty string or list of strings, got {options!r}")
        per_image.append(np.array([unique.setdefault(t, len(unique)) for t in options]))
    return list(unique), per_image


def group_by_image(pairs: Sequence[Any]) -> tuple[list[Path], list[list[str]]]:
    """Unique image paths of manifest pairs (first-seen order) and the captions of each."""
    captions: dict[Path, list[str]] = {}
    for pair in pairs:
        captions.setdefault(pair.input, []).append(pair.partner)
    return list(captions), list(captions.values())


def augment(pixels: torch.Tensor, shift: int, flip: bool, generator: torch.Generator, batch: int | None = None,
            offset: int = 0) -> torch.Tensor:
    """Random horizontal flips and integer translations (edge-replicated, up to `shift` pixels) of
    ``[b, 3, S, S]``. The draws are made for a global batch of `batch` rows (default b) and rows
    ``offset..offset+b`` used, so every DDP rank augments its slice as one process would."""
    count, rows = batch or len(pixels), slice(offset, offset + len(pixels))
    if flip:
        flips = (torch.rand(count, generator=generator) < 0.5)[rows]
        pixels = torch.where(flips[:, None, None, None], pixels.flip(-1), pixels)
    if shift:
        size = pixels.shape[-1]
        padded = F.pad(pixels, (shift, shift, shift, shift), mode="replicate")
        dx = torch.randint(0, 2 * shift + 1, (count,), generator=generator)[rows]
        dy = torch.randint(0, 2 * shift + 1, (count,), generator=generator)[rows]
        index = (dy[:, None] + torch.arange(size))[:, None, :, None].expand(-1, 3, -1, size + 2 * shift)
        padded = padded.gather(2, index.to(pixels.device))
        index = (dx[:, None] + torch.arange(size))[:, None, None, :].expand(-1, 3, size, -1)
        pixels = padded.gather(3, index.to(pixels.device))
    return pixels


def embed_texts(anchor: Any, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm text vectors of `texts` from the anchor's frozen text model."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = anchor.tokenize(list(texts[start:start + batch_size]))
            tokens = {k: v.to(anchor.device) for k, v in tokens.items()} if isinstance(tokens, dict) \
                else tokens.to(anchor.device)
            chunks.append(F.normalize(anchor.encode_tokens(tokens).float(), dim=-1).cpu())
    return torch.cat(chunks)


def cached_text_vectors(texts: Sequence[str], anchor: TrainableTowerAnchor,
                        cache_dir: str | Path | None = None) -> torch.Tensor:
    """``[N, D]`` unit-norm frozen text vectors of `texts`, kept in the on-disk anchor-vector cache
    (`anybind.train.anchor_cache`, keyed by the text side's identity; default folder under
    ``$ANYBIND_HOME``) so reruns skip the text model."""
    identity: AnchorIdentity = anchor.text_identity
    cache = AnchorVectorCache.for_anchor(identity, cache_dir)
    keys = [partner_key("caption", text) for text in texts]
    first_missing: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key not in cache:
            first_missing.setdefault(key, index)
    missing = list(first_missing.values())
    if missing:
        cache.add([keys[i] for i in missing], embed_texts(anchor, [texts[i] for i in missing]))
    return cache.get(keys)


def caption_vectors(texts: Sequence[str], anchor: TrainableTowerAnchor, cache: bool | str | Path) -> torch.Tensor:
    """Unit-norm frozen text vectors of `texts`: through the on-disk cache unless `cache` is False
    (True: its default folder; a path: that folder)."""
    if cache is False:
        return embed_texts(anchor, texts)
    return cached_text_vectors(texts, anchor, None if cache is True else cache)


def encode_images(tower: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm image vectors of normalized `pixels` ``[N, 3, S, S]`` (tower in eval mode)."""
    was_training = tower.training
    tower.eval()
    device = next(tower.parameters()).device
    with torch.inference_mode():
        vectors = torch.cat([F.normalize(tower(chunk.to(device)).float(), dim=-1).cpu()
                             for chunk in pixels.split(batch_size)])
    tower.train(was_training)
    return vectors


def evaluate_lit(image_vectors: torch.Tensor, text_vectors: torch.Tensor,
                 labels: Mapping[str, np.ndarray] | None = None,
                 class_vectors: Mapping[str, tuple[list[str], torch.Tensor]] | None = None) -> dict[str, float]:
    """Retrieval and zero-shot metrics of paired unit vectors ``[N, D]`` (row i of both is object i).

    ``text_to_image_r1``: the query's own image is the top hit; ``text_to_image_r5`` likewise in
    the top 5; with `labels` (attribute -> ``[N]`` strings) also ``..._r1_same_labels``: the top
    image has every label of the query's object (captions of identical objects are identical).
    `class_vectors` (attribute -> (class names, ``[C, D]`` text vectors)) adds
    ``zero_shot_<attribute>`` accuracy of the images (with `labels`).
    """
    similarity = text_vectors @ image_vectors.T
    target = torch.arange(len(similarity))
    top = similarity.topk(min(5, similarity.shape[1]), dim=1).indices
    metrics = {"text_to_image_r1": float((top[:, 0] == target).float().mean()),
               "text_to_image_r5": float((top == target[:, None]).any(dim=1).float().mean()),
               "chance_r1": 1.0 / len(similarity)}
    if labels:
        same = np.ones(len(similarity), dtype=bool)
        best = top[:, 0].numpy()
        for values in labels.values():
            same &= np.asarray(values)[best] == np.asarray(values)
        metrics["text_to_image_r1_same_labels"] = float(same.mean())
    for attribute, (names, vectors) in (class_vectors or {}).items():
        if labels and attribute in labels:
            predicted = np.array(names)[(image_vectors @ vectors.T).argmax(dim=1).numpy()]
            metrics[f"zero_shot_{attribute}"] = float((predicted == np.asarray(labels[attribute])).mean())
            metrics[f"zero_shot_{attribute}_chance"] = 1.0 / len(names)
    return metrics
