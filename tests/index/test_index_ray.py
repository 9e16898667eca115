"""Ray Data embedding on a local 2-CPU Ray instance gives the same index as the torchrun/single-process path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from anybind import Index
from anybind.errors import InputError
from anybind.index.parts import embed_parts, merge_parts

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

TEXTS = [f"a caption about thing {i}" for i in range(5)]


@pytest.mark.ray
def test_ray_dataset_embeds_the_same_parts(tiny_model: Any, tmp_path: Path) -> None:
    from anybind.index.ray_embed import embed_dataset

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    try:
        def first_row_late(row: dict[str, Any], first: str = TEXTS[0]) -> dict[str, Any]:
            import time

            if row["path"] == first:
                time.sleep(2.0)  # its block finishes last: Ray reorders rows unless told to keep the order
            return row

        # one block per row, the first one slowest: the paths must still be read in dataset order
        dataset = ray.data.from_items([{"path": text} for text in TEXTS], override_num_blocks=len(TEXTS))
        dataset = dataset.map(first_row_late)
        with pytest.raises(InputError, match=r"`dataset`: expected a Ray Dataset with a `path` column"):
            embed_dataset(dataset.rename_columns({"path": "file"}), "text", tmp_path / "bad.index")
        # one part is already done (as after a failed run): only the other two go to the actor
        embed_parts(tiny_model, {"text": TEXTS}, tmp_path / "r.index.parts", part_rows=2, rank=0, world_size=3)
        info = embed_dataset(dataset, "text", tmp_path / "r.index", model="tiny", part_rows=2, concurrency=1,
                             device="cpu")
        assert dataset.context.execution_options.preserve_order is False  # the caller's setting is kept
    finally:
        ray.shutdown()
    assert info["embedded_parts"] == 2 and info["skipped_parts"] == 1 and info["count"] == 5
    embed_parts(tiny_model, {"text": TEXTS}, tmp_path / "local.parts", part_rows=2)
    merge_parts(tmp_path / "local.parts", tmp_path / "local.index")
    by_ray, local = Index.load(tmp_path / "r.index"), Index.load(tmp_path / "local.index")
    assert (by_ray.vectors() - local.vectors()).abs().max() <= 1e-6
    assert [by_ray.metadata(i) for i in by_ray.ids] == [local.metadata(i) for i in local.ids]
