"""The path of ``anybind embed`` and ``anybind index build`` under ``torchrun`` (one process or many):
each rank embeds its parts (see `anybind.index.parts`), rank 0 merges them into one index folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anybind.cli import inputs as cli_inputs
from anybind.cli.inputs import check_batch_size
from anybind.errors import InputError


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """``--parts``, ``--part-rows``, ``--no-merge``, ``--keep-parts``, ``--parquet`` (the torchrun path)."""
    from anybind.index.parts import DEFAULT_PART_ROWS

    group = parser.add_argument_group("scale-out (run under `torchrun --nproc-per-node G -m anybind.cli ...`)")
    group.add_argument("--parts", default=None, metavar="DIR",
                       help="folder of per-process parts (default: OUT.parts); a rerun skips finished parts")
    group.add_argument("--part-rows", type=int, default=DEFAULT_PART_ROWS, metavar="N",
                       help="inputs per part (default: %(default)s)")
    group.add_argument("--no-merge", action="store_true",
                       help="only write this run's parts; assemble them later with `anybind index merge`")
    group.add_argument("--keep-parts", action="store_true", help="keep the parts folder after merging")
    group.add_argument("--parquet", default=None, metavar="FILE",
                       help="also write the row metadata as a Parquet file (row order = vector order)")


def embed_into_index(args: argparse.Namespace, inputs: dict[str, list[Any]], out: str, *, backend: str = "exact",
                     backend_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Embed `inputs` as this process's share of a torchrun job (rank 0 of 1 without torchrun), then on
    rank 0 merge every part into the index folder `out`. Returns rank 0's index summary (None on other
    ranks and with ``--no-merge``). A failure on any rank is raised on every rank."""
    import torch

    from anybind.index.parts import embed_parts
    from anybind.model import default_device
    from anybind.train import distributed

    batch_size = check_batch_size(args)
    if args.part_rows < 1:
        raise InputError(f"`--part-rows`: expected a positive integer, got {args.part_rows}")
    parts = Path(args.parts) if args.parts else Path(out).with_name(Path(out).name + ".parts")
    requested = torch.device(args.device) if args.device else default_device()
    created = distributed.join_process_group(requested)
    try:
        device = distributed.local_device(requested)
        rank, world_size = distributed.world()
        model = cli_inputs._load_model(args.model, str(device) if device != requested else args.device)
        error = None
        try:
            embed_parts(model, inputs, parts, rank=rank, world_size=world_size, part_rows=args.part_rows,
                        batch_size=batch_size)
        except Exception as failure:  # reported on every rank below, so no rank waits forever
            error = failure
        _raise_first(distributed.gather_objects(_describe(error)), error, "embedding")
        summary = None
        if rank == 0 and not args.no_merge:
            try:
                summary = _merge(parts, out, backend, backend_options or {}, args)
            except Exception as failure:
                error = failure
        _raise_first(distributed.gather_objects(_describe(error)), error, "merging")
        return summary
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _merge(parts: Path, out: str, backend: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from anybind.index import Index
    from anybind.index.parts import merge_parts, remove_parts

    from anybind.model import spec_reference

    model = getattr(args, "model", None)
    merge_parts(parts, out, backend=backend, backend_options=options,
                model_spec=spec_reference(model) if model is not None else None)
    if backend == "faiss":
        from anybind.index.faiss_store import build_faiss_index

        build_faiss_index(out, options)
    if args.parquet:
        from anybind.index.export import export_parquet

        export_parquet(out, args.parquet)
    if not args.keep_parts:
        remove_parts(parts)
    return Index.load(out, verify=False).info()


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def _raise_first(reports: list[str | None], own: BaseException | None, stage: str) -> None:
    """Re-raise this rank's own error, else the first other rank's as an `InputError` naming the rank."""
    if own is not None:
        raise own
    for rank, report in enumerate(reports):
        if report is not None:
            raise InputError(f"rank {rank} failed while {stage}: {report}")
