"""Build the default bundle: world -> LiT anchor -> audio, point clouds and depth bound to images.

Everything is cached under ``$ANYBIND_HOME/bundles/<recipe>-<hash of the recipe>/``: the world
files, the anchor, each binding run, and the final ``bundle/`` that `anybind.load` reads. The
final folder is swapped in atomically, so a reader never sees a half-built bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybind.builders import register_builder
from anybind.config import anybind_home, from_dict, load_named, to_dict
from anybind.errors import InputError

BUNDLE_FOLDER = "bundle"
BOUND_MODALITIES = ("audio", "pointcloud", "depth")


@dataclass(frozen=True)
class DemoRecipe:
    """``configs/demo/<name>.yaml``: sizes and schedules of everything the default bundle trains."""

    world: dict  # generate_world arguments: n_objects, seed
    lit: dict  # LiTTrainConfig fields for the anchor's image tower
    bind: dict  # modality -> {encoder, encoder_args, preprocess, train: TrainConfig fields}
    eval: dict = field(default_factory=dict)  # template-set names: shape_templates, material_templates
    version: int = 1


@dataclass(frozen=True)
class WorldRecipe:
    """The ``world:`` section of a demo recipe: `generate_world`'s arguments."""

    n_objects: int
    seed: int = 0
    config: str = "default"  # world config name in configs/world/
    workers: int = 1
    depth_format: str = "png16"


def load_demo_recipe(name: str) -> DemoRecipe:
    """The demo recipe `name` (configs/demo/), its ``world`` and ``lit`` sections checked by the config
    parser: a typo is a `ConfigError` naming the key, not a `TypeError` from deep in the build."""
    from anybind.train.lit_config import LiTTrainConfig

    recipe = load_named(DemoRecipe, "demo", name, "demo recipe")
    from_dict(WorldRecipe, recipe.world, f"demo recipe {name!r}: `world`")
    from_dict(LiTTrainConfig, recipe.lit, f"demo recipe {name!r}: `lit`")
    return recipe


def recipe_key(recipe: DemoRecipe, anchor: dict[str, Any] | None) -> str:
    """A short hash naming a build: the recipe, the world config, the anchor choice and the anybind version."""
    import anybind
    from anybind.demo.world import load_world_config

    world = to_dict(load_world_config(recipe.world.get("config", "default")))
    text = json.dumps({"recipe": to_dict(recipe), "world": world, "anchor": anchor, "anybind": anybind.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _log(message: str, progress: bool) -> None:
    if progress:
        print(f"[anybind default bundle] {message}", flush=True)


@register_builder("default")
def build_default_bundle(rebuild: bool = False, recipe: str = "default", anchor: dict[str, Any] | None = None,
                         home: str | Path | None = None, progress: bool = True, device: str | None = None) -> Path:
    """Build (or find in the cache) the default bundle of `recipe` and return its folder.

    `anchor` replaces the LiT anchor by another anchor spec (e.g. ``{"kind": "openclip",
    "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}``): the modalities are then bound to
    that anchor instead. `rebuild` trains everything again. Timings land in ``bundle.json``'s ``info``.
    `device` (default: CUDA when available, else CPU) is the one device of the whole build: the LiT
    tower, the base model and every binding run (it overrides devices named in the recipe).
    """
    from anybind.model import default_device

    device = str(default_device() if device is None else device)
    recipe_config = load_demo_recipe(recipe)
    for modality in recipe_config.bind:
        if modality not in BOUND_MODALITIES:
            raise InputError(f"demo recipe {recipe!r}: `bind.{modality}`: expected one of {', '.join(BOUND_MODALITIES)}")
    root = Path(home).expanduser() if home else anybind_home() / "bundles"
    root = root / f"{recipe}-{recipe_key(recipe_config, anchor)}"
    final = root / BUNDLE_FOLDER
    if (final / "bundle.json").is_file() and not rebuild:
        return final
    work = root / "work"
    if rebuild:
        shutil.rmtree(work, ignore_errors=True)
    timings: dict[str, float] = {}
    start, start_cpu = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()[0]  # the machine's load: the build's wall times depend on it

    world_dir = work / "world"
    world_info = _build_world(recipe_config, world_dir, progress)
    timings["world_seconds"] = round(time.perf_counter() - start, 1)

    mark = time.perf_counter()
    anchor_dir, anchor_metrics = _build_anchor(recipe_config, anchor, world_dir, work / "anchor", progress, device)
    timings["anchor_seconds"] = round(time.perf_counter() - mark, 1)

    import anybind
    from anybind.train import bind

    base_model = anybind.load(anchor_dir, device=device)
    entries: dict[str, tuple[dict[str, Any], None]] = {}
    bind_info: dict[str, Any] = {}
    for modality, settings in recipe_config.bind.items():
        mark = time.perf_counter()
        _log(f"binding {modality} to the anchor's images", progress)
        result = bind(_bind_config(modality, settings, world_dir, anchor_dir, work / "runs" / modality, progress,
                                   device), overwrite=True, base_model=base_model)
        bundle_config = json.loads((result.bundle_dir / "bundle.json").read_text())
        entry = dict(bundle_config["modalities"][modality])
        entry["weights"] = str((result.bundle_dir / entry["weights"]).resolve())
        entries[modality] = (entry, None)
        timings[f"bind_{modality}_seconds"] = round(time.perf_counter() - mark, 1)
        bind_info[modality] = {"val": result.metrics, "steps": result.step, "logit_scale": result.logit_scale}

    timings["total_seconds"] = round(time.perf_counter() - start, 1)
    timings["total_cpu_seconds"] = round(time.process_time() - start_cpu, 1)  # this process, all threads
    timings["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]  # at start, at end
    _assemble(final, anchor_dir, entries, name=f"default:{recipe}",
              info={"recipe": recipe, "world_dir": str(world_dir.resolve()), "recipe_config": to_dict(recipe_config), "world": world_info,
                    "anchor_val": anchor_metrics, "bind": bind_info, "timings": timings})
    _log(f"built in {timings['total_seconds']:.0f} s -> {final}", progress)
    return final


def world_dir_of(bundle_dir: str | Path) -> Path:
    """The folder of the procedural world a default bundle was trained on (files + split manifests)."""
    from anybind.errors import InputFileError
    from anybind.model import BUNDLE_FILE

    bundle_dir = Path(bundle_dir)
    config_file = bundle_dir / BUNDLE_FILE
    if not config_file.is_file():
        raise InputFileError(f"`bundle_dir`: {str(bundle_dir)!r} is not a bundle (no {BUNDLE_FILE})")
    info = json.loads(config_file.read_text()).get("info", {})
    world_dir = Path(info["world_dir"]) if "world_dir" in info else bundle_dir.parent / "work" / "world"
    if not (world_dir / "world.json").is_file():
        raise InputFileError(f"`bundle_dir`: the world of {str(bundle_dir)!r} is missing: expected "
                             f"{str(world_dir / 'world.json')!r} (rebuild with `anybind demo --retrain`)")
    return world_dir


def _build_world(recipe: DemoRecipe, world_dir: Path, progress: bool) -> dict[str, Any]:
    from anybind.demo.world import generate_world

    summary = world_dir / "world.json"
    if not summary.is_file():
        _log(f"generating the world ({recipe.world.get('n_objects')} objects)", progress)
        generate_world(out_dir=world_dir, **recipe.world)
    return json.loads(summary.read_text())


def _build_anchor(recipe: DemoRecipe, anchor: dict[str, Any] | None, world_dir: Path, anchor_dir: Path,
                  progress: bool, device: str) -> tuple[Path, dict[str, Any]]:
    """Train the LiT anchor on the world's train split (or write the given anchor's spec)."""
    from anybind.model import BUNDLE_FILE, FORMAT_VERSION, MODEL_FORMAT

    if (anchor_dir / BUNDLE_FILE).is_file():
        return anchor_dir, json.loads((anchor_dir / BUNDLE_FILE).read_text()).get("info", {}).get("metrics", {})
    if anchor is not None:
        from anybind.atomic import atomic_write_json

        atomic_write_json(anchor_dir / BUNDLE_FILE, {"format": MODEL_FORMAT, "version": FORMAT_VERSION,
                                                     "name": "anchor", "anchor": anchor, "modalities": {}})
        return anchor_dir, {}
    import numpy as np
    from PIL import Image

    from anybind.demo.world import read_objects
    from anybind.train.lit import save_lit_bundle, train_lit

    _log("training the LiT image tower against frozen all-MiniLM-L6-v2", progress)
    splits = {name: read_objects(world_dir / f"{name}.jsonl") for name in ("train", "val")}
    images = {name: np.stack([np.asarray(Image.open(r["image"]).convert("RGB")) for r in rows])
              for name, rows in splits.items()}
    result = train_lit(images["train"], [r["captions"] for r in splits["train"]], lit_config(recipe, device),
                       val_images=images["val"], val_captions=[r["captions"] for r in splits["val"]],
                       progress=progress)
    save_lit_bundle(result, anchor_dir, name="lit-world")
    return anchor_dir, dict(result.metrics)


def lit_config(recipe: DemoRecipe, device: str) -> Any:
    """The recipe's LiT training settings (`LiTTrainConfig`) on `device`."""
    from anybind.train.lit_config import LiTTrainConfig

    return LiTTrainConfig(**{**recipe.lit, "device": device})


def _bind_config(modality: str, settings: dict[str, Any], world_dir: Path, anchor_dir: Path, output_dir: Path,
                 progress: bool, device: str) -> dict[str, Any]:
    settings = dict(settings)
    train = {**settings.pop("train", {}), "device": device}
    # The world's files are known good: skip the trainer's up-front load of every input.
    data = {"check_inputs": False, **settings.pop("data", {}),
            "manifest": str(world_dir / "pairs" / f"{modality}-image.csv")}
    return {"modality": modality, "model": str(anchor_dir), "output_dir": str(output_dir), "data": data,
            "train": train, "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 1},
            "log": {"tensorboard": False, "progress": progress}, "name": f"world-{modality}", **settings}


def _assemble(final: Path, anchor_dir: Path, entries: dict[str, tuple[dict[str, Any], None]], name: str,
              info: dict[str, Any]) -> None:
    """Write the final bundle: the anchor's files copied in, each modality's weights copied in."""
    from anybind.atomic import swap_in_folder
    from anybind.train.bundle import write_bundle

    anchor_spec = json.loads((anchor_dir / "bundle.json").read_text())["anchor"]
    staging = final.with_name(f".{final.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    write_bundle(staging, anchor_spec=anchor_spec, modalities=entries, name=name, info=info)
    for item in anchor_dir.iterdir():  # the anchor's own files (e.g. the LiT image tower weights)
        if item.name != "bundle.json":
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, staging / item.name)
    swap_in_folder(staging, final)


@dataclass
class DemoWorld:
    """The default bundle loaded with what its examples need: the world's classes and test objects."""

    model: Any  # the loaded `BoundModel`
    classes: dict  # attribute ("shape", "material", ...) -> class names
    test_objects: list  # held-out object records (file paths, captions, labels)


def load_demo_world(recipe: str = "default") -> DemoWorld:
    """Build (or find cached) the default bundle of `recipe`, load it on CPU, and read its world's test split."""
    import anybind
    from anybind.demo.world import read_objects

    bundle = build_default_bundle(recipe=recipe)
    world_dir = world_dir_of(bundle)
    return DemoWorld(model=anybind.load(bundle, device="cpu"),
                     classes=json.loads((world_dir / "world.json").read_text())["classes"],
                     test_objects=read_objects(world_dir / "test.jsonl"))
