"""Image and text modalities: every accepted input form, and the bad-input table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anybind
from anybind.errors import AnchorMismatchError, InputError, InputFileError, UnknownNameError


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(path)
    return path


def test_every_image_form_gives_the_same_vector(tiny_model: anybind.BoundModel, image_file: Path) -> None:
    pil = Image.open(image_file).convert("RGB")
    array = np.array(pil)
    from_path = tiny_model.embed("image", [image_file])
    assert torch.allclose(tiny_model.embed("image", [str(image_file)]), from_path)
    assert torch.allclose(tiny_model.embed("image", [pil]), from_path)
    assert torch.allclose(tiny_model.embed("image", [array]), from_path)
    # Float tensors go through torchvision's tensor resize: close to PIL's, not bit-equal.
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    assert torch.nn.functional.cosine_similarity(tiny_model.embed("image", tensor), from_path).item() > 0.99


def test_embed_returns_unit_norm_float32_on_cpu_with_anchor(tiny_model: anybind.BoundModel) -> None:
    vectors = tiny_model.embed("image", torch.rand(5, 3, 64, 64), batch_size=2)
    assert vectors.shape == (5, tiny_model.dim) and vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert vectors.anchor == tiny_model.anchor_key


def test_batching_does_not_change_results(tiny_model: anybind.BoundModel) -> None:
    texts = [f"caption number {i}" for i in range(7)]
    assert torch.allclose(tiny_model.embed("text", texts, batch_size=3), tiny_model.embed("text", texts), atol=1e-6)


def test_dict_form_embeds_each_modality(tiny_model: anybind.BoundModel) -> None:
    out = tiny_model.embed({"text": ["a dog"], "image": torch.rand(2, 3, 64, 64)})
    assert set(out) == {"text", "image"} and out["image"].shape == (2, tiny_model.dim)


def test_a_lone_string_is_one_input(tiny_model: anybind.BoundModel) -> None:
    assert tiny_model.embed("text", "a dog").shape == (1, tiny_model.dim)


def test_temperature_is_exposed_not_applied(tiny_model: anybind.BoundModel) -> None:
    assert tiny_model.logit_scale("image") == pytest.approx(tiny_model.anchor.model.logit_scale.exp().item())
    assert tiny_model.temperature("text") == pytest.approx(1 / tiny_model.logit_scale("text"))
    assert torch.allclose(tiny_model.embed("text", ["x"]).norm(), torch.tensor(1.0))


def test_bf16_autocast_precision_still_returns_float32() -> None:
    model = anybind.load("tiny", device="cpu", precision="bf16")
    vectors = model.embed("text", ["a dog"])
    assert vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_mixing_embeddings_of_two_anchors_raises(tiny_model: anybind.BoundModel) -> None:
    other = anybind.load({"format": "anybind.model", "anchor": {**tiny_model.config.anchor, "seed": 5}}, device="cpu")
    a, b = tiny_model.embed("text", ["a dog"]), other.embed("text", ["a dog"])
    with pytest.raises(AnchorMismatchError, match="cannot combine embeddings of different anchors"):
        _ = a @ b.T


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "notes.txt").write_text("hello")
    good = folder / "good.png"
    Image.new("RGB", (20, 20)).save(good)
    (folder / "truncated.png").write_bytes(good.read_bytes()[:40])
    return {"dir": folder, "corrupt": folder / "corrupt.png", "text": folder / "notes.txt",
            "truncated": folder / "truncated.png"}


BAD_INPUTS = [
    # (modality, inputs (callable on bad_files), error, message regex)
    ("image", lambda f: ["/no/such/cat.jpg"], InputFileError, r"`inputs\[0\]`: an image file '/no/such/cat.jpg' does not exist"),
    ("image", lambda f: [f["corrupt"]], InputFileError, r"`inputs\[0\]`: '.*corrupt.png' is not a readable image"),
    ("image", lambda f: [f["truncated"]], InputFileError, r"`inputs\[0\]`: '.*truncated.png' is not a readable image"),
    ("image", lambda f: [f["text"]], InputFileError, r"`inputs\[0\]`: '.*notes.txt' is not a readable image"),
    ("image", lambda f: [f["dir"]], InputFileError, r"`inputs\[0\]`: expected an image file, got a directory"),
    ("image", lambda f: [], InputError, r"`inputs` for modality 'image': expected image file paths.*got an empty list"),
    ("image", lambda f: [""], InputError, r"`inputs\[0\]`: expected an image path, got an empty string"),
    ("image", lambda f: [torch.rand(64, 64)], InputError, r"`inputs\[0\]`: expected a float tensor \[3, H, W\].*got shape \(64, 64\)"),
    ("image", lambda f: [torch.rand(4, 64, 64)], InputError, r"got shape \(4, 64, 64\)"),
    ("image", lambda f: [torch.randint(0, 255, (3, 8, 8))], InputError, r"expected a float tensor in \[0, 1\], got dtype torch.int64"),
    ("image", lambda f: [torch.full((3, 8, 8), float("nan"))], InputError, r"`inputs\[0\]`: expected finite values, got 192 NaN/inf"),
    ("image", lambda f: [np.zeros((8, 8, 3), dtype=np.float64)], InputError, r"expected a uint8 array.*got dtype float64"),
    ("image", lambda f: [42], InputError, r"`inputs\[0\]`: expected image file paths.*got int 42"),
    ("text", lambda f: [""], InputError, r"`inputs\[0\]`: expected a non-empty string, got ''"),
    ("text", lambda f: ["ok", "   "], InputError, r"`inputs\[1\]`: expected a non-empty string"),
    ("text", lambda f: [3], InputError, r"`inputs\[0\]`: expected a string, got int 3"),
    ("text", lambda f: [], InputError, r"expected non-empty strings, got an empty list"),
    ("imgae", lambda f: ["x"], UnknownNameError, r"unknown modality 'imgae'; did you mean 'image'.*Is the plugin installed\?"),
]


@pytest.mark.parametrize(("modality", "make_inputs", "error", "message"), BAD_INPUTS)
def test_bad_inputs(tiny_model: anybind.BoundModel, bad_files: dict[str, Path], modality: str, make_inputs,
                    error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_model.embed(modality, make_inputs(bad_files))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch_size": 0}, r"`batch_size`: expected a positive integer, got 0"),
     ({"batch_size": 2.5}, r"`batch_size`: expected a positive integer, got 2.5"),
     ({"sample_rate": 16000}, r"text inputs take no options, got sample_rate")],
)
def test_bad_embed_arguments(tiny_model: anybind.BoundModel, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tiny_model.embed("text", ["a dog"], **kwargs)


def test_rgba_image_matches_open_clips_own_preprocess(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    # open_clip converts to RGB after the resize; Pillow resamples RGBA with premultiplied alpha,
    # so converting first moved pixels by up to ~3e-2 where alpha varies.
    from open_clip.transform import PreprocessCfg, image_transform_v2

    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (90, 70, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 70, dtype=np.uint8)[None, :]  # alpha varies across the image
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    reference = image_transform_v2(PreprocessCfg(**tiny_model.anchor.model.visual.preprocess_cfg), is_train=False)
    expected = reference(Image.open(path)).unsqueeze(0)
    modality = tiny_model.bound("image").modality
    for item in (path, Image.open(path), rgba):
        assert torch.allclose(modality.load([item]), expected, atol=1e-6)
