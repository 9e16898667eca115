"""Embedding a `ray.data.Dataset` of paths on a Ray cluster into index parts (``pip install anybind[ray]``).

    import ray, anybind.index.ray_embed as ray_embed
    paths = ray.data.read_text("files.txt").rename_columns({"text": "path"})   # or from_items([{"path": ...}])
    ray_embed.embed_dataset(paths, "image", "photos.index", model="my-bundle/", concurrency=8, num_gpus=1)

The dataset's ``path`` column is read on the driver, in dataset order, to cut it into the same
deterministic parts the torchrun path uses (`anybind.index.parts`; paths are small). The parts then
go through ``map_batches`` on an actor pool: each actor loads the model once (on a GPU when
`num_gpus` is given) and writes each of its parts atomically into the parts folder, which must be
on storage every node sees. Finished parts are skipped, so a rerun after a failure only redoes what
is missing. The driver merges the parts into one index folder, identical to the torchrun result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anybind.errors import InputError, MissingDependencyError
from anybind.index.parts import DEFAULT_PART_ROWS, merge_parts, part_is_done, plan_parts, remove_parts


def require_ray() -> Any:
    """Import ray (with Ray Data), or raise `MissingDependencyError` naming the pip extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("embedding with Ray needs ray[data]: `pip install anybind[ray]`") from None
    return ray


class PartEmbedder:
    """A Ray Data actor: loads the model once, then embeds and writes the parts named in each batch."""

    def __init__(self, model: str, modality: str, plan_key: str, total_parts: int, parts: str,
                 batch_size: int | None, device: str | None) -> None:
        import anybind

        self.model = anybind.load(model, device=device)
        self.modality = modality
        self.plan_key, self.total_parts = plan_key, total_parts
        self.parts = Path(parts)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Embed the parts of a batch (columns ``part``, ``first``, ``items``) -> ``{"part", "rows"}``."""
        import numpy as np
        import torch

        from anybind.index.parts import Part, write_part

        rows = []
        for number, first, items in zip(batch["part"].tolist(), batch["first"].tolist(), batch["items"]):
            part = Part(number=int(number), modality=self.modality, first=int(first), items=[str(i) for i in items])
            vectors = self.model.embed(self.modality, part.items, batch_size=self.batch_size, progress=False)
            write_part(self.parts, self.plan_key, self.total_parts, part, vectors.as_subclass(torch.Tensor).numpy(),
                       self.model.anchor.identity.to_dict(), self.model.anchor_key)
            rows.append(len(part.items))
        return {"part": batch["part"], "rows": np.asarray(rows, dtype=np.int64)}


def paths_in_order(dataset: Any) -> list[str]:
    """The ``path`` column of `dataset` in dataset order.

    Ray Data hands out blocks as they finish unless ``preserve_order`` is on, so a slow block
    would reorder the paths, change the part plan (a rerun would then redo finished parts) and
    the index order. The setting is turned on for this read only (the caller's setting is restored).
    """
    column = dataset.select_columns(["path"])
    options = column.context.execution_options  # shared with `dataset`: restored below
    before = options.preserve_order
    options.preserve_order = True
    try:
        return [str(row["path"]) for row in column.take_all()]
    finally:
        options.preserve_order = before


def embed_dataset(dataset: Any, modality: str, out: str | Path, *, model: str = "tiny", parts: str | Path | None = None,
                  part_rows: int = DEFAULT_PART_ROWS, batch_size: int | None = None, concurrency: int = 1,
                  num_gpus: float = 0, device: str | None = None, backend: str = "exact",
                  backend_options: dict[str, Any] | None = None, keep_parts: bool = False) -> dict[str, Any]:
    """Embed the ``path`` column of the Ray `dataset` as `modality` into the index folder `out`; returns its info.

    `model` is what `anybind.load` takes (a preset, config file or bundle folder readable on
    every node). `concurrency` actors each hold one model; `num_gpus` per actor (0: CPU).
    `parts` defaults to ``OUT.parts``. See the module docstring for the steps.
    """
    ray = require_ray()
    from anybind.index import Index

    if "path" not in dataset.columns():
        raise InputError(f"`dataset`: expected a Ray Dataset with a `path` column, got columns {dataset.columns()}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"`concurrency`: expected a positive number of actors, got {concurrency!r}")
    items = paths_in_order(dataset)
    if not items:
        raise InputError("`dataset`: expected at least one path, got an empty dataset")
    plan = plan_parts({modality: items}, part_rows)
    folder = Path(parts) if parts is not None else Path(out).with_name(Path(out).name + ".parts")
    folder.mkdir(parents=True, exist_ok=True)
    todo = [part for part in plan.parts if not part_is_done(folder, plan, part)]
    if todo:
        work = ray.data.from_items([{"part": p.number, "first": p.first, "items": p.items} for p in todo])
        options = {"num_gpus": num_gpus} if num_gpus else {}
        work.map_batches(PartEmbedder, batch_size=1, concurrency=concurrency, **options,
                         fn_constructor_kwargs={"model": model, "modality": modality, "plan_key": plan.key,
                                                "total_parts": len(plan.parts), "parts": str(folder),
                                                "batch_size": batch_size, "device": device}).materialize()
    merge_parts(folder, out, backend=backend, backend_options=backend_options)
    if backend == "faiss":
        from anybind.index.faiss_store import build_faiss_index

        build_faiss_index(out, backend_options)
    if not keep_parts:
        remove_parts(folder)
    return {"embedded_parts": len(todo), "skipped_parts": len(plan.parts) - len(todo),
            **Index.load(out, verify=False).info()}
