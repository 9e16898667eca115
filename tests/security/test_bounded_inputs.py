"""Small inputs that would demand unbounded memory get a clear anybind error before any big allocation."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from anybind.anchor import ImagePreprocess
from anybind.errors import InputError, InputFileError
from anybind.modalities import image as image_module
from anybind.modalities.audio.loader import load_audio_batch
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modalities.pointcloud import loader as pointcloud_loader
from anybind.registry import get_modality

ANCHOR = types.SimpleNamespace(image_preprocess=ImagePreprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3))
# CLAP's fusion front end with a 12 s limit, so a 13 s clip at 1 kHz exceeds it cheaply.
FUSION = AudioPreprocess(sample_rate=48000, clip_seconds=10.0, mel_bins=64, window_size=1024, hop_size=480, fmin=50,
                         fmax=14000, long_clips="fusion", max_windows=1, quantize_int16=True, max_seconds=12.0)


def loader(name: str) -> Callable[..., Any]:
    """The `load` of modality `name` with its default preprocessing and a stand-in anchor."""
    cls = get_modality(name)
    return cls(cls.resolve_preprocess(None if name != "audio" else "cnn-16k", ANCHOR), ANCHOR).load


def _wav(tmp: Path, seconds: float, rate: int) -> str:
    path = tmp / f"clip-{rate}.wav"
    soundfile.write(path, np.zeros(int(seconds * rate), np.float32), rate)
    return str(path)


def _jpeg(tmp: Path, width: int, height: int) -> str:
    path = tmp / "big.jpg"
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path, quality=80)
    return str(path)


CASES: list[tuple[str, Callable[[Path], Any], type[Exception], list[str]]] = [
    ("audio array at 1 Hz", lambda t: loader("audio")([np.zeros(200_000, np.float32)], sample_rate=1), InputError,
     ["`sample_rate`", "between 1000 and 768000 Hz", "got 1 Hz"]),
    ("audio array at 999 Hz", lambda t: loader("audio")([np.zeros(100, np.float32)], sample_rate=999), InputError,
     ["between 1000 and 768000 Hz"]),
    ("audio array at 2 MHz", lambda t: loader("audio")([np.zeros(100, np.float32)], sample_rate=2_000_000),
     InputError, ["between 1000 and 768000 Hz", "2000000"]),
    ("fusion file over max_seconds", lambda t: load_audio_batch([_wav(t, 13, 1000)], FUSION), InputError,
     ["lasts 13.0 s", "longer than the 12 s", "`max_seconds`", "'clap-48k'"]),
    ("fusion array over max_seconds", lambda t: load_audio_batch([np.zeros(13_000, np.float32)], FUSION, 1000),
     InputError, ["`inputs[0]`: the clip lasts 13.0 s", "`max_seconds`"]),
    ("0x0 PIL image", lambda t: loader("image")([Image.new("RGB", (0, 0))]), InputError,
     ["`inputs[0]`", "zero size (0x0 pixels)"]),
    ("0x0 array", lambda t: loader("image")([np.zeros((0, 0, 3), np.uint8)]), InputError, ["zero size"]),
    ("elongated tensor", lambda t: loader("image")([torch.zeros(3, 1, 200)]), InputError,
     ["1 pixels", "aspect ratio above 50:1", "MAX_ASPECT_RATIO"]),
    ("too many pixels in a PIL image", lambda t: loader("image")([Image.new("L", (8000, 5001))]), InputError,
     ["8000x5001 = 40,008,000 pixels", "more than the 40,000,000", "MAX_IMAGE_PIXELS"]),
]


def test_too_many_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pointcloud_loader, "MAX_POINTS", 100)
    with pytest.raises(InputError, match=r"`inputs\[0\]`: holds 101 points, more than the 100 anybind reads "
                                         r"\(anybind.modalities.pointcloud.loader.MAX_POINTS\)"):
        loader("pointcloud")([np.random.default_rng(0).standard_normal((101, 3))])


@pytest.mark.parametrize(("make", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bounded_input_error_table(tmp_path: Path, make: Callable[[Path], Any], error: type[Exception],
                                   words: list[str]) -> None:
    with pytest.raises(error) as caught:
        make(tmp_path)
    for word in words:
        assert word in str(caught.value)


def test_fusion_reads_a_long_clip_within_its_limit(tmp_path: Path) -> None:
    batch = load_audio_batch([_wav(tmp_path, 11, 1000)], FUSION)
    assert batch["mel_fusion"].shape == (1, 4, 1001, 64) and bool(batch["longer"][0])


def test_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _jpeg(tmp_path, 400, 200)
    monkeypatch.setattr(image_module, "MAX_IMAGE_PIXELS", 30_000)
    decoded = image_module.load_image_file(path, "inputs[0]")
    assert decoded.size == (200, 100)  # JPEG DCT scaling by 1/2: 20,000 pixels, within the 30,000
    png = tmp_path / "big.png"
    Image.open(path).save(png)
    with pytest.raises(InputFileError, match=r"400x200 = 80,000 pixels, more than the 30,000"):
        image_module.load_image_file(png, "inputs[0]")


def test_large_mesh_and_ascii_pcd_files_are_refused_before_parsing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pointcloud_loader, "MAX_PARSED_FILE_BYTES", 64)
    mesh = tmp_path / "big.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n" * 4)
    with pytest.raises(InputFileError, match=r"\.obj file .* is 128 bytes, more than the 64 anybind parses"):
        loader("pointcloud")([mesh])
    pcd = tmp_path / "big.pcd"
    pcd.write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 20\nDATA ascii\n" + b"0 0 0\n1 1 1\n" * 10)
    with pytest.raises(InputFileError, match=r"ASCII PCD file .* more than the 64 anybind parses as text; save it as "
                                             r"binary PCD"):
        loader("pointcloud")([pcd])


def test_huge_png_header_is_an_anybind_error_not_a_decompression_bomb(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    for name in ("image", "depth"):
        with pytest.raises(InputFileError) as caught:
            loader(name)([path])
        assert "pixels" in str(caught.value) and "40,000,000" in str(caught.value)
        assert not isinstance(caught.value, Image.DecompressionBombError)
