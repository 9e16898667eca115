"""`anybind.load`: presets, config files, bundles, and its bad-input table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import anybind
from anybind.errors import ConfigError, InputError, InputFileError, UnknownNameError


def test_tiny_preset_loads_small_and_fast(tiny_model: anybind.BoundModel) -> None:
    parameters = sum(p.numel() for p in tiny_model.anchor.parameters())
    assert 2_000_000 < parameters < 5_000_000
    assert {"image", "text"} <= set(tiny_model.modalities)


def test_config_file_and_bundle_folder_load(tmp_path: Path, tiny_model: anybind.BoundModel) -> None:
    config = tiny_model.to_config()
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(__import__("json").dumps(config))
    for spec in (tmp_path / "model.yaml", bundle, str(bundle)):
        assert anybind.load(spec, device="cpu").anchor_key == tiny_model.anchor_key


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("tinny", UnknownNameError, r"unknown preset 'tinny'; did you mean 'tiny'\?"),
        ("", InputError, r"`spec`: expected a preset name, config file or bundle folder, got ''"),
        ("/no/such/model.yaml", InputFileError, r"config file '/no/such/model.yaml' does not exist"),
        ({"anchor": {"kind": "openclap"}}, UnknownNameError, r"unknown anchor 'openclap'; did you mean 'openclip'\?"),
        ({"anchor": {}}, ConfigError, r"`anchor` needs a `kind`"),
        ({"anchor": {"kind": "openclip", "model": "ViT-B-32"}, "modality": {}}, ConfigError,
         r"unknown key\(s\) 'modality' \(did you mean 'modalities'\?\)"),
        ({"anchor": {"kind": "openclip", "model": "ViT-B-32"}, "version": 99}, ConfigError, r"newer anybind"),
        ({"anchor": {"kind": "openclip", "model": "ViT-B-32"}, "modalities": {"image": {}}}, ConfigError,
         r"`modalities.image` is served by the anchor"),
        ({"anchor": {"kind": "openclip", "model": "ViT-B-32"}, "modalities": {"sonar": {}}}, UnknownNameError,
         r"unknown modality 'sonar'"),
    ],
)
def test_bad_specs(spec, error: type[Exception], message: str) -> None:
    if isinstance(spec, dict):
        spec = {"format": "anybind.model", **spec}
    with pytest.raises(error, match=message):
        anybind.load(spec, device="cpu")


def test_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"is not an anybind bundle \(no bundle.json\)"):
        anybind.load(tmp_path, device="cpu")


def test_bad_precision() -> None:
    with pytest.raises(InputError, match=r"`precision`: expected 'fp32', 'bf16' or 'fp16', got 'fp8'"):
        anybind.load("tiny", precision="fp8")  # type: ignore[arg-type]


def test_built_preset_calls_its_registered_builder_and_loads_the_bundle(
        tmp_path: Path, tiny_model: anybind.BoundModel) -> None:
    import json

    from anybind import builders

    bundle = tmp_path / "built"
    calls = []

    def build(rebuild: bool, folder: str, config: dict) -> Path:
        calls.append(rebuild)
        path = Path(folder)
        path.mkdir(exist_ok=True)
        (path / "bundle.json").write_text(json.dumps(config))
        return path

    builders.register_builder("test-built")(build)
    preset = tmp_path / "built.yaml"
    preset.write_text(yaml.safe_dump({"builder": "test-built",
                                      "args": {"folder": str(bundle), "config": tiny_model.to_config()}}))
    try:
        assert anybind.load(preset, device="cpu").anchor_key == tiny_model.anchor_key
        anybind.load(preset, device="cpu", rebuild=True)
        assert calls == [False, True]
        assert json.loads((bundle / "bundle.json").read_text())["name"] == "tiny"
    finally:
        builders._builders.pop("test-built")


def test_bundle_whose_anchor_weights_changed_is_refused(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    import json

    from anybind.errors import AnchorMismatchError

    config = tiny_model.to_config()
    identity = tiny_model.anchor.identity.to_dict()
    config["info"] = {"anchor_identity": {**identity, "weights_sha256": "0" * 64}}
    (tmp_path / "bundle.json").write_text(json.dumps(config))
    with pytest.raises(AnchorMismatchError, match=r"trained against anchor openclip:tiny:random-init:0000"):
        anybind.load(tmp_path, device="cpu")
    config["info"] = {"anchor_identity": identity}
    (tmp_path / "bundle.json").write_text(json.dumps(config))
    assert anybind.load(tmp_path, device="cpu").anchor_key == tiny_model.anchor_key
