"""Benchmark: embed 64 clips of 10 s with anybind's ``htsat`` vs laion_clap's own audio path.

Both paths use the same random-init HTSAT-tiny weights (laion_clap's CLAP model, saved as an
official-format checkpoint and loaded by anybind). Each path runs in its own worker process so
its peak memory (growth of the process's max RSS over the loaded model) is its own. The
laion_clap path is what ``CLAP_Module.get_audio_embedding_from_data`` does (int16 round trip
and ``get_audio_features`` per clip, then ``get_audio_embedding`` with autograd on, as it
runs), in the same batch size; it is also timed under ``torch.no_grad`` as a stricter peer.
Timings are wall clock (best of ``--repeats``) and process CPU time, which is steadier on a
shared machine.

    python bench/audio_embed.py [--clips 64] [--batch-size 8] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 48000
CLIP_SECONDS = 10
AUDIO_CFG = dict(audio_length=1024, clip_samples=480000, mel_bins=64, sample_rate=48000, window_size=1024,
                 hop_size=480, fmin=50, fmax=14000, class_num=527, model_type="HTSAT", model_name="tiny")
PATHS = ("laion", "laion-no-grad", "anybind")
LABELS = {"laion": "laion_clap path", "laion-no-grad": "laion_clap no_grad", "anybind": "anybind htsat"}
TEXT_CFG = dict(context_length=77, vocab_size=16, width=8, heads=1, layers=1, model_type="transformer")


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prepare(folder: Path, clips: int) -> None:
    """Write the shared checkpoint (official CLAP format) and the clips into `folder`."""
    from anybind.modalities.audio.laion_source import import_clap_module

    torch.manual_seed(0)
    model = import_clap_module("model").CLAP(embed_dim=768, audio_cfg=AUDIO_CFG, text_cfg=TEXT_CFG).eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 0, "state_dict": state}, folder / "clap-tiny.pt")
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((clips, SAMPLE_RATE * CLIP_SECONDS)) * 0.1).astype(np.float32)
    np.save(folder / "clips.npy", audio)


def run_anybind(folder: Path, batch_size: int) -> tuple[np.ndarray, float, float]:
    """anybind: batched, inference_mode, FFT front end; returns (embeddings, seconds)."""
    import yaml

    import anybind
    from anybind.config import configs_dir

    config = yaml.safe_load((configs_dir() / "presets" / "tiny.yaml").read_text())
    config["anchor"]["model_cfg"]["embed_dim"] = 512
    config["modalities"] = {"audio": {"encoder": "htsat", "preprocess": "clap-48k", "encoder_args": {
        "clap_checkpoint": str(folder / "clap-tiny.pt"), "output": "clap"}}}
    model = anybind.load(config, device="cpu")
    clips = np.load(folder / "clips.npy")
    model.embed("audio", clips[:1], sample_rate=SAMPLE_RATE, batched=True)  # warm-up
    ready = _current_rss_mb()
    start = time.perf_counter()
    vectors = model.embed("audio", clips, sample_rate=SAMPLE_RATE, batch_size=batch_size, batched=True)
    return vectors.as_subclass(torch.Tensor).numpy(), time.perf_counter() - start, ready


def run_laion(folder: Path, batch_size: int, grad: bool = True) -> tuple[np.ndarray, float, float]:
    """laion_clap's path as CLAP_Module.get_audio_embedding_from_data runs it (autograd on unless not
    `grad`); returns (embeddings, seconds, RSS MiB before embedding)."""
    from anybind.modalities.audio.laion_source import clap_data_functions, import_clap_module

    f = clap_data_functions()
    model = import_clap_module("model").CLAP(embed_dim=768, audio_cfg=AUDIO_CFG, text_cfg=TEXT_CFG).eval()
    state = torch.load(folder / "clap-tiny.pt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("module."):]: v for k, v in state.items()})
    clips = np.load(folder / "clips.npy")

    def embed(batch: np.ndarray) -> torch.Tensor:
        inputs = []
        for clip in batch:
            waveform = torch.from_numpy(f["int16_to_float32"](f["float32_to_int16"](clip))).float()
            inputs.append(f["get_audio_features"]({}, waveform, 480000, "rand_trunc", "repeatpad", AUDIO_CFG))
        return model.get_audio_embedding(inputs).detach()  # as CLAP_Module returns per call

    with torch.set_grad_enabled(grad):
        embed(clips[:1])  # warm-up
        ready = _current_rss_mb()
        start = time.perf_counter()
        vectors = torch.cat([embed(clips[i:i + batch_size]) for i in range(0, len(clips), batch_size)])
    return vectors.detach().numpy(), time.perf_counter() - start, ready


def worker(path: str, folder: Path, batch_size: int, threads: int) -> None:
    """Run one path and print a JSON line: seconds, peak memory, embeddings file."""
    torch.set_num_threads(threads)
    cpu = time.process_time()
    if path == "anybind":
        vectors, seconds, ready = run_anybind(folder, batch_size)
    else:
        vectors, seconds, ready = run_laion(folder, batch_size, grad=path == "laion")
    cpu = time.process_time() - cpu
    out = folder / f"{path}.npy"
    np.save(out, vectors)
    print(json.dumps({"path": path, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": _rss_mb(), "ready_rss_mb": ready,
                      "embeddings": str(out)}))


def main() -> None:
    """Prepare shared weights and clips, run both workers (alternating), print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per path; the fastest counts")
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.folder), args.batch_size, args.threads)
        return
    with tempfile.TemporaryDirectory(prefix="anybind-audio-bench-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.clips)
        results: dict[str, list[dict]] = {path: [] for path in PATHS}
        for _ in range(args.repeats):
            for path in PATHS:
                command = [sys.executable, __file__, "--worker", path, "--folder", tmp,
                           "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                results[path].append(json.loads(done.stdout.strip().splitlines()[-1]))
        best = {path: min(runs, key=lambda r: r["seconds"]) for path, runs in results.items()}
        difference = float(np.abs(np.load(best["anybind"]["embeddings"]) - np.load(best["laion"]["embeddings"])).max())
    clips = args.clips
    print(f"audio embedding, HTSAT-tiny random init, {clips} clips x {CLIP_SECONDS} s at {SAMPLE_RATE} Hz, "
          f"batch {args.batch_size}, {args.threads} threads, best of {args.repeats}")
    for path in PATHS:
        r = best[path]
        print(f"  {LABELS[path]:<19} {r['seconds']:7.2f} s wall {clips / r['seconds']:6.2f} clips/s  "
              f"{r['cpu_seconds']:7.2f} s CPU  peak RSS {r['peak_rss_mb']:6.0f} MiB "
              f"({r['ready_rss_mb']:.0f} MiB with the model loaded, +{r['peak_rss_mb'] - r['ready_rss_mb']:.0f} "
              f"MiB while embedding)")
    for peer in ("laion", "laion-no-grad"):
        print(f"  throughput ratio anybind / {LABELS[peer]}: {best[peer]['seconds'] / best['anybind']['seconds']:.2f}x "
              f"wall, {best[peer]['cpu_seconds'] / best['anybind']['cpu_seconds']:.2f}x CPU time (goal >= 1.5x)")
    print(f"  max abs difference of the embeddings (anybind vs laion_clap): {difference:.2e}")


if __name__ == "__main__":
    main()
