"""The registry: decorators, duplicates, suggestions, and entry-point plugins found lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import anybind
from anybind import registry
from anybind.errors import DuplicateNameError, UnknownNameError


def test_builtins_are_listed() -> None:
    assert {"image", "text"} <= set(anybind.list_modalities())
    assert anybind.list_encoders("image") == ["anchor"]
    assert "openclip" in anybind.list_anchors()
    assert anybind.list_encoders()["text"] == ["anchor"]  # type: ignore[index]


def test_duplicate_names_raise_naming_both_modules() -> None:
    @anybind.register_modality("dup-test")
    class First(anybind.Modality):
        default_encoder = "x"

    try:
        with pytest.raises(DuplicateNameError, match=r"modality 'dup-test' is registered twice: by .*First and by .*Second"):
            @anybind.register_modality("dup-test")
            class Second(anybind.Modality):
                default_encoder = "x"
    finally:
        registry.unregister_modality("dup-test")


def test_duplicate_encoder_names_raise() -> None:
    @anybind.register_encoder("image", "dup-encoder")
    class A(anybind.Encoder):
        pass

    try:
        with pytest.raises(DuplicateNameError, match="image encoder 'dup-encoder' is registered twice"):
            @anybind.register_encoder("image", "dup-encoder")
            class B(anybind.Encoder):
                pass
    finally:
        registry._encoders["image"].pop("dup-encoder")


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda: registry.get_modality("audoi"), r"unknown modality 'audoi'.*Registered: .*image.*Is the plugin installed\?"),
        (lambda: registry.get_encoder("image", "anchr"), r"unknown image encoder 'anchr'; did you mean 'anchor'\?"),
        (lambda: registry.get_anchor("open-clip"), r"unknown anchor 'open-clip'; did you mean 'openclip'\?"),
        (lambda: anybind.list_encoders("txt"), r"unknown modality 'txt'; did you mean 'text'\?"),
    ],
)
def test_unknown_names_suggest_close_matches(lookup, message: str) -> None:
    with pytest.raises(UnknownNameError, match=message):
        lookup()


PLUGIN = '''
"""A third-party modality: "radar" images as [H, W] float arrays (values about 250..350)."""
from dataclasses import dataclass
import torch
import anybind

@dataclass(frozen=True)
class RadarPreprocess:
    kelvin_min: float
    kelvin_max: float
    version: int = 1

class Radar(anybind.Modality):
    accepts = "[H, W] float tensors"
    Preprocess = RadarPreprocess
    default_encoder = "mean-pool"

    @classmethod
    def resolve_preprocess(cls, spec, anchor):
        return RadarPreprocess(**(spec or {"kelvin_min": 250.0, "kelvin_max": 350.0}))

    def load(self, items, **options):
        span = self.preprocess.kelvin_max - self.preprocess.kelvin_min
        return torch.stack([(torch.as_tensor(x) - self.preprocess.kelvin_min) / span for x in items])

@anybind.register_encoder("radar", "mean-pool")
class MeanPool(anybind.Encoder):
    def __init__(self, config, context):
        super().__init__(config, context)
        self.head = anybind.ProjectionHead(8, context.dim)

    def forward(self, batch):
        pooled = torch.nn.functional.adaptive_avg_pool2d(batch.unsqueeze(1), (2, 4)).flatten(1)
        return self.head(pooled)
'''


def _install_plugin_distribution(folder: Path) -> None:
    """A real installed distribution (dist-info + entry point) on a sys.path folder."""
    (folder / "anybind_radar.py").write_text(PLUGIN)
    info = folder / "anybind_radar-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anybind-radar\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[anybind.modalities]\nradar = anybind_radar:Radar\n")


def test_entry_point_plugin_is_discovered_and_embeds(tmp_path: Path) -> None:
    _install_plugin_distribution(tmp_path)
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import anybind
        assert "radar" in anybind.list_modalities(), anybind.list_modalities()
        assert anybind.list_encoders("radar") == ["mean-pool"]
        config = anybind.load("tiny").to_config()
        config["modalities"]["radar"] = {{}}
        model = anybind.load(config, device="cpu")
        vectors = model.embed("radar", [torch.full((16, 16), 300.0), torch.rand(16, 16) * 100 + 250])
        assert vectors.shape == (2, model.dim), vectors.shape
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_discovery_is_lazy(tmp_path: Path) -> None:
    _install_plugin_distribution(tmp_path)
    script = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import anybind
assert "anybind_radar" not in sys.modules   # nothing scanned at import time
anybind.list_modalities()
assert "anybind_radar" in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_broken_plugin_is_skipped_with_one_warning(tmp_path: Path) -> None:
    _install_plugin_distribution(tmp_path)
    (tmp_path / "anybind_broken.py").write_text("raise RuntimeError('plugin exploded on import')\n")
    info = tmp_path / "anybind_broken-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anybind-broken\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[anybind.modalities]\nbroken = anybind_broken:Broken\n")
    script = f"""
import sys, warnings
sys.path.insert(0, {str(tmp_path)!r})
import anybind
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = anybind.load("tiny", device="cpu")
    assert "thermal" in anybind.list_modalities() and "broken" not in anybind.list_modalities()
    anybind.registry._discovered = False  # the next lookup scans entry points again
    anybind.list_modalities()
messages = [str(w.message) for w in caught if issubclass(w.category, anybind.registry.PluginWarning)]
assert len(messages) == 1, messages
print(messages[0])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "anybind-broken 2.0" in result.stdout and "RuntimeError: plugin exploded on import" in result.stdout


ENCODER_PLUGIN = '''
import anybind
import torch


@anybind.register_encoder("depth", "flat-mean")
class FlatMean(anybind.Encoder):
    def __init__(self, config, context):
        super().__init__(config, context)
        self.head = anybind.ProjectionHead(16, context.dim)

    def forward(self, batch):
        pixels = batch["disparity"] if isinstance(batch, dict) else batch
        return self.head(torch.nn.functional.adaptive_avg_pool2d(pixels.reshape(pixels.shape[0], 1, *pixels.shape[-2:]),
                                                                 (4, 4)).flatten(1))
'''


def test_encoder_only_plugin_package_with_its_own_configs(tmp_path: Path) -> None:
    # A package adding one encoder to the built-in depth modality (entry-point group anybind.encoders)
    # and shipping configs/ (a template set) beside its module: both are found on first lookup.
    package = tmp_path / "anybind_flatdepth"
    (package / "configs" / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text(ENCODER_PLUGIN)
    (package / "configs" / "templates" / "flat-depth.yaml").write_text("templates:\n  - 'a flat depth map of {}.'\n")
    info = tmp_path / "anybind_flatdepth-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anybind-flatdepth\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[anybind.encoders]\ndepth-flat-mean = anybind_flatdepth\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import anybind
        from anybind.config import load_templates
        assert "flat-mean" in anybind.list_encoders("depth"), anybind.list_encoders("depth")
        assert load_templates("flat-depth") == ("a flat depth map of {{}}.",)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
