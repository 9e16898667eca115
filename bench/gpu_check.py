"""GPU readiness: exercise every CUDA path of anybind on this machine and print one table.

Checks (each PASS / FAIL / SKIP with what was measured):

- ``embed`` of every built-in modality and encoder (image, text, audio cnn + htsat, point cloud
  projection, depth anchor-image + cnn) on CUDA in fp32 / bf16 / fp16: finite, and cosine to the
  CPU fp32 result >= 0.999 (fp32) or >= 0.99 (half precision);
- throughput (items/s) per modality on CUDA, fp32 and bf16 (after a warm-up, with synchronize);
- ``anybind.train.bind`` for a few steps on CUDA with bf16 autocast (audio cnn, a generated manifest);
- two-rank DDP over NCCL under ``torchrun`` when two GPUs exist (each rank must end on
  ``cuda:LOCAL_RANK``; the losses must be finite);
- the index ``exact`` backend scoring on CUDA, against the CPU result;
- faiss-gpu when installed (``GpuIndexFlatIP`` against anybind's exact search; anybind's own
  ``faiss`` backend runs on CPU).

Runs in under 5 minutes on one GPU (tiny random-init models, a few hundred inputs). Without CUDA it
says so and exits 0. Exit code 1 when any check fails.

    python bench/gpu_check.py
    python bench/gpu_check.py --items 512     # more inputs for the throughput rows
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PRECISIONS = {"fp32": 0.999, "bf16": 0.99, "fp16": 0.99}  # minimum cosine to the CPU fp32 vectors
MINI_HTSAT = {"name": "mini", "embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2]}
AUDIO_RATE = 16000


@dataclass
class Row:
    """One line of the result table."""

    check: str
    status: str  # PASS, FAIL or SKIP
    detail: str


def model_configs() -> dict[str, Any]:
    """The tiny preset (audio cnn, depth anchor-image) and a variant with the other encoders."""
    import yaml

    from anybind.config import configs_dir

    tiny = yaml.safe_load((configs_dir() / "presets" / "tiny.yaml").read_text())
    variant = copy.deepcopy(tiny)
    variant["name"] = "tiny-variant"
    variant["modalities"]["audio"] = {"encoder": "htsat", "encoder_args": {"architecture": MINI_HTSAT}}
    variant["modalities"]["depth"] = {"encoder": "cnn"}
    return {"tiny": tiny, "variant": variant}


def make_inputs(count: int, seed: int = 0) -> dict[str, tuple[list[Any], dict[str, Any]]]:
    """`count` synthetic inputs per modality, with the loader options each needs."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    return {
        "image": ([torch.rand(3, 96, 96, generator=generator) for _ in range(count)], {}),
        "text": ([f"a photo of object number {i}" for i in range(count)], {}),
        "audio": ([(rng.standard_normal(AUDIO_RATE) * 0.1).astype(np.float32) for _ in range(count)],
                  {"sample_rate": AUDIO_RATE}),
        "pointcloud": ([rng.standard_normal((1024, 3)).astype(np.float32) for _ in range(count)], {}),
        "depth": ([rng.uniform(0.5, 5.0, (120, 160)).astype(np.float32) for _ in range(count)], {}),
    }


def check_embed(configs: dict[str, Any], inputs: dict[str, tuple[list[Any], dict[str, Any]]],
                sample: int) -> list[Row]:
    """Every modality x encoder x precision on CUDA against CPU fp32."""
    import anybind

    rows = []
    for name, config in configs.items():
        cpu = anybind.load(config, device="cpu")
        reference = {m: cpu.embed(m, items[:sample], **options) for m, (items, options) in inputs.items()
                     if name == "tiny" or m in ("audio", "depth")}
        for precision, minimum in PRECISIONS.items():
            gpu = anybind.load(config, device="cuda", precision=precision)
            for modality, expected in reference.items():
                items, options = inputs[modality]
                label = f"embed {modality}/{gpu.encoder(modality).encoder_name} {precision}"
                try:
                    got = gpu.embed(modality, items[:sample], **options)
                    cosine = float((got * expected).sum(dim=-1).min())
                    finite = bool(torch.isfinite(got).all())
                    ok = finite and cosine >= minimum
                    rows.append(Row(label, "PASS" if ok else "FAIL",
                                    f"min cosine to CPU fp32 {cosine:.5f} (need >= {minimum}), finite={finite}"))
                except Exception as error:  # report and go on: the table is the point
                    rows.append(Row(label, "FAIL", _error(error)))
            del gpu
            torch.cuda.empty_cache()
    return rows


def check_throughput(config: dict[str, Any], inputs: dict[str, tuple[list[Any], dict[str, Any]]]) -> list[Row]:
    """Items/s per modality on CUDA (loader + encoder, as `embed` runs), fp32 and bf16."""
    import anybind

    rows = []
    for precision in ("fp32", "bf16"):
        model = anybind.load(config, device="cuda", precision=precision)
        for modality, (items, options) in inputs.items():
            try:
                model.embed(modality, items[:8], **options)  # warm-up (cuDNN autotune, allocator)
                torch.cuda.synchronize()
                start = time.perf_counter()
                model.embed(modality, items, **options)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                rows.append(Row(f"throughput {modality} {precision}", "PASS",
                                f"{len(items) / seconds:,.0f} items/s ({len(items)} items, {seconds:.2f} s)"))
            except Exception as error:
                rows.append(Row(f"throughput {modality} {precision}", "FAIL", _error(error)))
    return rows


def write_audio_manifest(folder: Path, count: int) -> Path:
    """`count` one-second WAV files with captions, as a CSV manifest (`input`, `caption`)."""
    import soundfile

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "pairs.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "caption"])
        for number in range(count):
            tone = np.sin(2 * np.pi * (200 + 40 * (number % 8)) * np.arange(AUDIO_RATE) / AUDIO_RATE)
            wave = (0.3 * tone + 0.05 * rng.standard_normal(AUDIO_RATE)).astype(np.float32)
            soundfile.write(folder / f"clip{number:03d}.wav", wave, AUDIO_RATE)
            writer.writerow([f"clip{number:03d}.wav", f"a tone of pitch {number % 8}"])
    return manifest


def bind_recipe(folder: Path, manifest: Path, steps: int) -> dict[str, Any]:
    """A few-step audio cnn binding recipe on CUDA with bf16 autocast."""
    return {"modality": "audio", "encoder": "cnn", "encoder_args": {"architecture": "cnn-tiny"}, "model": "tiny",
            "output_dir": str(folder / "run"),
            "data": {"manifest": str(manifest), "val_fraction": 0.25, "anchor_cache_dir": str(folder / "cache"),
                     "load_options": {}},
            "train": {"batch_size": 16, "steps": steps, "lr": 1e-3, "warmup_steps": 1, "device": "cuda",
                      "precision": "bf16"},
            "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 1},
            "log": {"every_steps": 1, "tensorboard": False, "progress": False}}


def check_train(folder: Path, steps: int) -> Row:
    """`bind` for a few steps on CUDA under bf16 autocast; the losses must be finite."""
    from anybind.train import bind
    from anybind.train.run_dir import read_metrics

    try:
        start = time.perf_counter()
        result = bind(bind_recipe(folder, write_audio_manifest(folder / "data", 64), steps), overwrite=True)
        losses = [row["train_loss"] for row in read_metrics(result.output_dir)]
        ok = bool(losses) and all(np.isfinite(losses))
        return Row("train audio/cnn bf16 (bind)", "PASS" if ok else "FAIL",
                   f"{result.step} steps in {time.perf_counter() - start:.1f} s, losses {losses[0]:.3f} -> "
                   f"{losses[-1]:.3f}")
    except Exception as error:
        return Row("train audio/cnn bf16 (bind)", "FAIL", _error(error))


def check_ddp(folder: Path, steps: int) -> Row:
    """Two ranks over NCCL under torchrun (``python -m torch.distributed.run``), one GPU each."""
    if torch.cuda.device_count() < 2:
        return Row("DDP 2 ranks NCCL (torchrun)", "SKIP", f"{torch.cuda.device_count()} GPU(s); needs 2")
    recipe = bind_recipe(folder, write_audio_manifest(folder / "data", 64), steps)
    recipe["output_dir"] = str(folder / "ddp-run")
    recipe_file = folder / "ddp-recipe.json"
    recipe_file.write_text(json.dumps(recipe))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).resolve()), "--ddp-worker", str(recipe_file)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        return Row("DDP 2 ranks NCCL (torchrun)", "FAIL", f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ranks_ok = sorted((r["rank"], r["current_device"]) for r in reports) == [(0, 0), (1, 1)]
    losses_ok = all(r["finite"] for r in reports)
    return Row("DDP 2 ranks NCCL (torchrun)", "PASS" if ranks_ok and losses_ok else "FAIL",
               f"{len(reports)} ranks, devices {[r['current_device'] for r in reports]}, finite losses={losses_ok}, "
               f"{time.perf_counter() - start:.1f} s")


def ddp_worker(recipe_file: str) -> int:
    """Run under torchrun: bind the recipe (bind joins the NCCL group itself), report this rank's device."""
    from anybind.train import bind
    from anybind.train.run_dir import read_metrics

    result = bind(json.loads(Path(recipe_file).read_text()), overwrite=True)
    losses = [row["train_loss"] for row in read_metrics(result.output_dir)] if Path(result.output_dir).exists() else []
    print(json.dumps({"rank": int(os.environ["RANK"]), "current_device": torch.cuda.current_device(),
                      "finite": all(np.isfinite(losses))}), flush=True)
    return 0


def check_exact_index(count: int = 200_000, dim: int = 512, queries: int = 256, k: int = 10) -> Row:
    """The exact backend scoring on CUDA: same ids and scores as on CPU."""
    from anybind import Index

    generator = torch.Generator().manual_seed(2)
    rows = F.normalize(torch.randn(count, dim, generator=generator), dim=1)
    query = F.normalize(torch.randn(queries, dim, generator=generator), dim=1)
    try:
        cpu = Index("gpu-check:random", dim)
        cpu.add(rows, modality="random")
        gpu = Index("gpu-check:random", dim, backend_options={"device": "cuda"})
        gpu.add(rows, modality="random")
        expected = cpu.search(query, k=k)
        gpu.search(query[:4], k=k)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        got = gpu.search(query, k=k)
        seconds = time.perf_counter() - start
        same = float(np.mean([a == b for a, b in zip(np.asarray(got.ids).ravel(), np.asarray(expected.ids).ravel())]))
        score_gap = float((torch.as_tensor(got.scores) - torch.as_tensor(expected.scores)).abs().max())
        ok = same >= 0.999 and score_gap < 1e-4
        return Row("index exact backend on CUDA", "PASS" if ok else "FAIL",
                   f"{count:,}x{dim}: ids equal {same:.4f}, max score gap {score_gap:.1e}, "
                   f"{queries / seconds:,.0f} queries/s")
    except Exception as error:
        return Row("index exact backend on CUDA", "FAIL", _error(error))


def check_faiss_gpu(count: int = 100_000, dim: int = 512, queries: int = 256, k: int = 10) -> Row:
    """faiss-gpu's GpuIndexFlatIP against anybind's exact search, when faiss with GPU support is installed."""
    try:
        import faiss
    except ImportError:
        return Row("faiss-gpu", "SKIP", "faiss not installed")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return Row("faiss-gpu", "SKIP", "faiss installed without GPU support (faiss-cpu)")
    from anybind import Index

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    query = rows[:queries] + 0.01 * rng.standard_normal((queries, dim)).astype(np.float32)
    try:
        resources = faiss.StandardGpuResources()
        flat = faiss.GpuIndexFlatIP(resources, dim)
        flat.add(rows)
        _, faiss_ids = flat.search(query, k)
        index = Index("gpu-check:random", dim)
        index.add(rows, modality="random")
        ours = np.asarray(index.search(query, k=k).ids)
        same = float((faiss_ids[:, 0] == ours[:, 0]).mean())
        return Row("faiss-gpu", "PASS" if same >= 0.999 else "FAIL",
                   f"GpuIndexFlatIP top-1 equal to anybind exact on {same:.4f} of {queries} queries")
    except Exception as error:
        return Row("faiss-gpu", "FAIL", _error(error))


def _error(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(error).__name__}: {str(error)[:200]}{where}"


def print_table(rows: list[Row]) -> None:
    width = max(len(r.check) for r in rows)
    for row in rows:
        print(f"{row.check:<{width}}  {row.status:<4}  {row.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=256, help="inputs per modality for throughput (default 256)")
    parser.add_argument("--sample", type=int, default=8, help="inputs per modality for the accuracy checks")
    parser.add_argument("--steps", type=int, default=5, help="training steps of the bind checks")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker)

    print(f"torch {torch.__version__} (CUDA build {torch.version.cuda}), python {platform.python_version()}, "
          f"CPU {platform.processor() or platform.machine()}")
    if not torch.cuda.is_available():
        print("no CUDA: torch sees no GPU here, so there is nothing to check (exit 0)")
        return 0
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"GPUs: {', '.join(names)}; bf16 supported: {torch.cuda.is_bf16_supported()}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    start = time.perf_counter()
    configs = model_configs()
    inputs = make_inputs(args.items)
    rows: list[Row] = []
    stages: list[Callable[[], list[Row]]] = [
        lambda: check_embed(configs, inputs, args.sample),
        lambda: check_throughput(configs["tiny"], inputs),
    ]
    for stage in stages:
        rows += stage()
    with tempfile.TemporaryDirectory(prefix="anybind-gpu-check-") as folder:
        rows.append(check_train(Path(folder) / "train", args.steps))
        rows.append(check_ddp(Path(folder) / "ddp", args.steps))
    rows.append(check_exact_index())
    rows.append(check_faiss_gpu())
    print()
    print_table(rows)
    failed = [r for r in rows if r.status == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks passed or skipped, {len(failed)} failed, "
          f"{time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
