"""Binding throughput: `anybind train` (cold and warm cache) against the plain PyTorch script a user would write.

Builds ~1,000 (1 s speech-like clip, image) pairs in a temp folder, then times in one process,
with the same thread count, batch size and number of optimizer steps:

(a) peer: a plain script -- decode every WAV and compute its log-mel once into one tensor, embed
    the images with the frozen anchor, train the same tower as the `cnn` encoder (input batch
    norm, conv/BN/ReLU/avg-pool stages, mean+max pooling, linear head) with symmetric InfoNCE
    and AdamW + warmup/cosine, evaluate R@1; it starts from the same initial weights and takes
    the same batch order as (b), so the R@1 comparison is not a seed-to-seed lottery;
(b) `anybind train` with the shipped recipe `configs/recipes/audio-cnn.yaml` (batch size, steps
    and warmup set as in the peer), first run: empty caches (a fresh $ANYBIND_HOME);
(c) the same run again: warm input, anchor-vector and precision caches.

Each variant's steps/s is optimizer steps / wall time of the whole job (data, features,
anchor vectors, training, validation). Goals (issue 12): cold >= 0.8x, warm >= 1.2x the peer,
the same validation R@1 within 0.02. Also: training only the head on a frozen backbone with
cached backbone features against recomputing the backbone every step (goal >= 10x).

    python bench/bind_throughput.py [--pairs 1000] [--epochs 30] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from machine import describe_machine  # bench/machine.py

SAMPLE_RATE = 16000
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "recipes" / "audio-cnn.yaml"


# ---- data ---------------------------------------------------------------------------------------------
def write_pairs(folder: Path, pairs: int, seed: int = 0) -> Path:
    """`pairs` 1 s speech-like clips (a pitch glide with formant-like harmonics, syllable envelope, noise)
    paired with 64x64 images whose colours and stripes follow the clip's pitch and rhythm."""
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    lines = ["input,image"]
    for index in range(pairs):
        pitch, glide, rate = rng.uniform(90, 300), rng.uniform(-0.4, 0.4), rng.uniform(2, 7)
        phase = 2 * np.pi * np.cumsum(pitch * (1 + glide * t)) / SAMPLE_RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)))
        clip = 0.2 * voice * envelope + 0.02 * rng.normal(size=t.size)
        soundfile.write(folder / "audio" / f"a{index:04d}.wav", clip.astype(np.float32), SAMPLE_RATE)
        image = np.zeros((64, 64, 3), np.float32)
        image[..., 0] = (pitch - 90) / 210
        image[..., 1] = (glide + 0.4) / 0.8
        image[..., 2] = 0.5 + 0.5 * np.sin(np.arange(64) * rate / 10)[None, :]
        image += 0.05 * rng.normal(size=image.shape)
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / "images" / f"i{index:04d}.png")
        lines.append(f"audio/a{index:04d}.wav,images/i{index:04d}.png")
    manifest = folder / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


# ---- (a) the plain-script peer ------------------------------------------------------------------------
class PeerTower(nn.Module):
    """The `cnn` encoder's architecture written out plainly: log-mel in, [B, D] out."""

    def __init__(self, mel_bins: int, channels: list[int], dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(mel_bins)
        layers: list[nn.Module] = []
        for a, b in zip([1, *channels[:-1]], channels):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.AvgPool2d(2, ceil_mode=True)]
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels[-1], dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm(mel.transpose(1, 3)).transpose(1, 3)
        x = self.stages(x).mean(dim=3)
        return self.head(self.dropout(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)))


def copy_initial_weights(tower: PeerTower, model: Any, recipe: dict) -> None:
    """Start the peer from the weights `anybind train` starts from (the recipe's encoder, seeded the same).

    With the same start and the same batch order (a seeded shuffle per epoch, as both use seed 0),
    the two runs do the same math, so their final R@1 differs only by dropout draws and rounding:
    a seed-to-seed spread on ~100 validation rows would otherwise hide any real difference.
    The two modules list the same tensors in the same order (checked by shape).
    """
    from anybind.model import ModalityConfig, build_modality

    entry = ModalityConfig(encoder=recipe["encoder"], encoder_args=dict(recipe["encoder_args"]),
                           preprocess=recipe["preprocess"], seed=recipe.get("seed", 0))
    encoder = build_modality("audio", entry, model.anchor, None).encoder
    theirs = encoder.state_dict()
    ours = tower.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()], "peer tower differs from cnn"
    tower.load_state_dict(dict(zip(ours, theirs.values())))


def peer_log_mels(paths: list[Path], pre: dict[str, Any]) -> torch.Tensor:
    """Decode every clip, repeat-pad to the window, log-mel once: ``[N, 1, frames, mel_bins]``."""
    import soundfile
    import torchaudio

    window = int(pre["sample_rate"] * pre["clip_seconds"])
    waves = []
    for path in paths:
        audio, _ = soundfile.read(path, dtype="float32")
        audio = np.tile(audio, window // len(audio))[:window] if len(audio) < window else audio[:window]
        waves.append(np.pad(audio, (0, window - len(audio))))
    fbank = torchaudio.functional.melscale_fbanks(pre["window_size"] // 2 + 1, float(pre["fmin"]), float(pre["fmax"]),
                                                  pre["mel_bins"], pre["sample_rate"], norm="slaney", mel_scale="slaney")
    mels = []
    for chunk in torch.from_numpy(np.stack(waves)).split(256):
        spec = torch.stft(chunk, pre["window_size"], pre["hop_size"], window=torch.hann_window(pre["window_size"]),
                          center=True, pad_mode="reflect", return_complex=True)
        power = spec.abs().pow(2).transpose(1, 2) @ fbank
        mels.append(10 * torch.log10(power.clamp(min=1e-10)).unsqueeze(1))
    return torch.cat(mels)


def recall_at_1(vectors: torch.Tensor, anchors: torch.Tensor) -> float:
    """Share of rows whose own anchor vector is the nearest (modality -> anchor)."""
    return float(((vectors @ anchors.T).argmax(dim=1) == torch.arange(len(vectors))).float().mean())


def run_peer(model: Any, pairs: list[tuple[Path, Path]], val: list[tuple[Path, Path]], recipe: dict,
             steps: int, batch: int, warmup: int) -> dict[str, float]:
    """The afternoon script: preload log-mels, train the tower, evaluate. Returns timings and R@1."""
    started = time.perf_counter()
    torch.manual_seed(0)
    pre = yaml.safe_load((RECIPE.parents[1] / "preprocess" / "audio" / f"{recipe['preprocess']}.yaml").read_text())
    channels = yaml.safe_load((RECIPE.parents[1] / "encoders" / "audio" /
                               f"{recipe['encoder_args']['architecture']}.yaml").read_text())["channels"]
    with torch.no_grad():
        anchors = F.normalize(model.embed("image", [str(i) for _, i in pairs + val]).as_subclass(torch.Tensor), dim=-1)
    mels = peer_log_mels([a for a, _ in pairs + val], pre)
    train_mels, val_mels = mels[:len(pairs)], mels[len(pairs):]
    train_anchors, val_anchors = anchors[:len(pairs)], anchors[len(pairs):]
    features_done = time.perf_counter()
    tower = PeerTower(pre["mel_bins"], channels, anchors.shape[1], recipe["encoder_args"].get("dropout", 0.0))
    copy_initial_weights(tower, model, recipe)
    log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    train = recipe["train"]
    decay = [p for p in tower.parameters() if p.ndim >= 2]
    rest = [p for p in tower.parameters() if p.ndim < 2] + [log_scale]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": train["weight_decay"]},
                                   {"params": rest, "weight_decay": 0.0}], lr=train["lr"], betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup else
                                                 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    per_epoch = len(pairs) // batch
    tower.train()
    for step in range(steps):
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(epoch))
        rows = order[index * batch:(index + 1) * batch]
        features = F.normalize(tower(train_mels[rows]), dim=-1)
        logits = log_scale.exp() * features @ train_anchors[rows].T
        target = torch.arange(len(rows))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*tower.parameters(), log_scale], train["grad_clip"])
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            log_scale.clamp_(0, math.log(100))
    tower.eval()
    with torch.no_grad():
        vectors = F.normalize(torch.cat([tower(chunk) for chunk in val_mels.split(256)]), dim=-1)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "feature_seconds": features_done - started, "r1": recall_at_1(vectors, val_anchors)}


# ---- (b), (c): anybind train --------------------------------------------------------------------------
def anybind_recipe(work: Path, name: str, manifest: Path, model_file: Path, steps: int, batch: int, warmup: int,
                   threads: int, **train: Any) -> dict[str, Any]:
    """The shipped audio-cnn recipe with this run's data, model, batch size and steps."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe.update(model=str(model_file), output_dir=str(work / "runs" / name))
    recipe["data"] = {**recipe["data"], "manifest": str(manifest), "val_fraction": 0.1}
    recipe["train"] = {**recipe["train"], "batch_size": batch, "steps": steps, "warmup_steps": warmup,
                       "device": "cpu", "num_threads": threads, **train}
    recipe["eval"] = {"every_steps": 0, "batch_size": 256}
    recipe["checkpoint"] = {"every_steps": 0, "keep_last": 1}
    recipe["log"] = {"every_steps": 50, "tensorboard": False, "progress": False}
    return recipe


def run_anybind(recipe: dict, model: Any) -> dict[str, float]:
    """Wall time of one `bind` call and its validation R@1 (modality -> anchor)."""
    from anybind.train import bind

    started = time.perf_counter()
    result = bind(recipe, base_model=model, overwrite=True)
    return {"seconds": time.perf_counter() - started, "r1": result.metrics.get("val_r1_modality_to_anchor", float("nan")),
            "median_step": statistics.median(result.step_seconds)}


def main() -> None:
    """Build the data set, run the peer, anybind cold and warm, and the frozen-head comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--head-steps", type=int, default=30, help="steps of each frozen-head run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="anybind-bench-throughput-"))
    os.environ["ANYBIND_HOME"] = str(work / "home")  # empty caches for the cold run
    import logging

    import anybind
    from anybind.train.manifest import read_pairs, split_pairs

    logging.basicConfig(level=logging.INFO, format="    %(name)s: %(message)s")
    logging.getLogger("anybind.train").setLevel(logging.INFO)
    print(f"machine: {describe_machine()}; {args.threads} threads")
    started = time.perf_counter()
    manifest = write_pairs(work / "data", args.pairs)
    print(f"data: {args.pairs} pairs of 1 s clips + 64x64 images in {time.perf_counter() - started:.1f}s ({work})")
    sys_path = Path(__file__).resolve().parents[1] / "tests" / "train"
    import sys

    sys.path.insert(0, str(sys_path))
    from conftest import write_anchor_only_config  # the tiny preset's anchor only (random init, offline)

    model_file = write_anchor_only_config(work / "anchor.yaml")
    model = anybind.load(model_file, device="cpu")
    train_pairs, val_pairs = split_pairs(read_pairs(manifest).pairs, 0.1, 0)
    steps = max(1, int(args.epochs * (len(train_pairs) // args.batch_size)))
    warmup = max(1, steps // 20)
    shipped = yaml.safe_load(RECIPE.read_text())
    print(f"recipe {RECIPE.name}: encoder {shipped['encoder']} {shipped['encoder_args']}, batch {args.batch_size}, "
          f"{steps} steps ({args.epochs:g} epochs of {len(train_pairs)} train rows), warmup {warmup}; "
          f"{len(val_pairs)} val rows")

    peer = run_peer(model, [(p.input, Path(p.partner)) for p in train_pairs],
                    [(p.input, Path(p.partner)) for p in val_pairs], shipped, steps, args.batch_size, warmup)
    print(f"(a) peer script:    {steps / peer['seconds']:.3f} steps/s  ({peer['seconds']:.1f}s, of which features "
          f"{peer['feature_seconds']:.1f}s; val R@1 {peer['r1']:.3f})")
    results = {}
    for label, name in (("(b) anybind cold:  ", "cold"), ("(c) anybind warm:  ", "warm")):
        results[name] = run_anybind(anybind_recipe(work, name, manifest, model_file, steps, args.batch_size, warmup,
                                                   args.threads), model)
        r = results[name]
        print(f"{label}{steps / r['seconds']:.3f} steps/s  ({r['seconds']:.1f}s, median step {r['median_step']:.3f}s; "
              f"val R@1 {r['r1']:.3f})")
        print(f"ratio anybind/peer: {peer['seconds'] / r['seconds']:.2f} ({name}; goal >= "
              f"{'0.8' if name == 'cold' else '1.2'}); R@1 difference {r['r1'] - peer['r1']:+.3f} (goal within 0.02)")

    head = {}
    for cache_features in (True, False):
        recipe = anybind_recipe(work, f"head-{cache_features}", manifest, model_file, args.head_steps, args.batch_size,
                                1, args.threads, params="head")
        recipe["data"]["cache_features"] = cache_features
        head[cache_features] = run_anybind(recipe, model)
    cached, recomputed = head[True], head[False]
    print(f"frozen head, cached backbone features: median step {cached['median_step'] * 1000:.1f} ms "
          f"(whole run {cached['seconds']:.1f}s incl. computing the features once)")
    print(f"frozen head, backbone every step:      median step {recomputed['median_step'] * 1000:.1f} ms "
          f"(whole run {recomputed['seconds']:.1f}s)")
    print(f"ratio frozen-head cached/recomputed: {recomputed['median_step'] / cached['median_step']:.1f}x per step, "
          f"{recomputed['seconds'] / cached['seconds']:.1f}x whole run of {args.head_steps} steps (goal >= 10x)")
    print(f"machine at the end: {describe_machine()}")


if __name__ == "__main__":
    main()
