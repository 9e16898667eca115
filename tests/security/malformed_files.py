"""Generators of malformed input files: zero-byte, wrong magic, truncated and huge-header files.

Used by the fuzz test (loaded by path: tests are not a package). Each case is
``(modality, file name, kind)``; `write_cases` writes them all into a folder.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

KINDS = ("zero-byte", "wrong-magic", "truncated", "huge-header", "valid")


def png_bytes(width: int, height: int, bit_depth: int = 8, color_type: int = 2, body: bytes = b"") -> bytes:
    """A PNG whose IHDR declares `width` x `height` followed by one tiny IDAT (not enough pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body or b"\x00" * 16))
            + chunk(b"IEND", b""))


def wav_header(rate: int, channels: int, data_bytes: int, bits: int = 16) -> bytes:
    """A RIFF/WAVE PCM header declaring `rate` Hz, `channels` and `data_bytes` of samples."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy v1 header declaring `shape` (the data itself is left out)."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def _valid_files() -> dict[str, bytes]:
    """Small valid files of each type, to truncate (and to load once as a warm-up)."""
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(0)
    files: dict[str, bytes] = {}
    for suffix, fmt in ((".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")):
        buffer = io.BytesIO()
        soundfile.write(buffer, (rng.standard_normal(16000) * 0.1).astype(np.float32), 16000, format=fmt)
        files[suffix] = buffer.getvalue()
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".gif", "GIF"), (".bmp", "BMP")):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(buffer, format=fmt)
        files[suffix] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(1, 5000, (32, 32)).astype(np.uint16)).save(buffer, format="PNG")
    files["depth.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.save(buffer, rng.standard_normal((64, 3)).astype(np.float32))
    files[".npy"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.savez(buffer, points=rng.standard_normal((64, 3)))
    files[".npz"] = buffer.getvalue()
    points = rng.standard_normal((64, 3)).astype(np.float32)
    files[".pcd"] = (b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 64\nHEIGHT 1\n"
                     b"POINTS 64\nDATA binary\n" + points.tobytes())
    files[".ply"] = (b"ply\nformat binary_little_endian 1.0\nelement vertex 64\nproperty float x\nproperty float y\n"
                     b"property float z\nend_header\n" + points.tobytes())
    files[".off"] = b"OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n"
    files[".obj"] = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n"
    triangle = struct.pack("<12f", 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0) + b"\x00\x00"
    files[".stl"] = b"\x00" * 80 + struct.pack("<I", 2) + triangle * 2
    return files


def _huge_headers() -> dict[str, bytes]:
    """Files whose headers declare enormous sizes the bodies do not hold."""
    ply = (b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\nproperty float y\n"
           b"property float z\nelement face 1000000000\nproperty list uchar int vertex_indices\nend_header\n"
           + b"\x00" * 64)
    return {
        "rate-1hz.wav": wav_header(1, 1, 200_000) + b"\x01\x00" * 100_000,  # 200 KB that declares 1 Hz
        "rate-max.wav": wav_header(0xFFFFFFF0, 1, 64) + b"\x00" * 64,
        "channels.wav": wav_header(16000, 65535, 0x7FFFFFF0) + b"\x00" * 4096,
        "bomb.png": png_bytes(30000, 30000),
        "large.png": png_bytes(7000, 7000),
        "zero.png": png_bytes(0, 0),
        "long.png": png_bytes(100000, 1),
        "bomb.gif": b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x2c" + b"\x00" * 9 + b"\x3b",
        "bomb.bmp": (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24,
                                                                             0, 0, 0, 0, 0, 0)),
        "depth-bomb.png": png_bytes(30000, 30000, bit_depth=16, color_type=0),
        "huge.npy": npy_header((1_000_000_000, 3)) + b"\x00" * 64,
        "huge-depth.npy": npy_header((100_000, 100_000)) + b"\x00" * 64,
        "huge.pcd": b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 1000000000000\nDATA binary\n" + b"\x00" * 64,
        "nodata.pcd": b"# " + b"x" * 100_000 + b"\n" * 1000,
        "nosize.pcd": b"FIELDS x y z\nTYPE F F F\nPOINTS 2\nDATA ascii\n0 0 0\n1 1 1\n",
        "huge.ply": ply,
        "huge.off": b"OFF\n1000000000 1000000000 0\n0 0 0\n",
        "huge.stl": b"\x00" * 80 + struct.pack("<I", 0x7FFFFFFF) + b"\x00" * 100,
    }


def cases() -> list[tuple[str, str, str, bytes]]:
    """Every ``(modality, file name, kind, content)`` of the fuzz set."""
    valid = _valid_files()
    modality_of = {".wav": "audio", ".flac": "audio", ".ogg": "audio", ".png": "image", ".jpg": "image",
                   ".gif": "image", ".bmp": "image", "depth.png": "depth", ".npy": "pointcloud",
                   ".npz": "pointcloud", ".pcd": "pointcloud", ".ply": "pointcloud", ".off": "pointcloud",
                   ".obj": "pointcloud", ".stl": "pointcloud"}
    out = []
    for key, content in valid.items():
        modality = modality_of[key]
        suffix = key if key.startswith(".") else Path(key).suffix
        stem = key.replace(".", "")
        out.append((modality, f"valid-{stem}{suffix}", "valid", content))
        out.append((modality, f"zero-{stem}{suffix}", "zero-byte", b""))
        out.append((modality, f"magic-{stem}{suffix}", "wrong-magic", b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4))
        out.append((modality, f"cut-{stem}{suffix}", "truncated", content[: max(1, len(content) // 2)]))
        out.append((modality, f"head-{stem}{suffix}", "truncated", content[:24]))
    out.append(("depth", "valid-depth.npy", "valid", _depth_npy()))
    for name, content in _huge_headers().items():
        modality = ("audio" if name.endswith(".wav") else "depth" if name.startswith(("depth", "huge-depth"))
                    else "image" if name.endswith((".png", ".gif", ".bmp")) else "pointcloud")
        out.append((modality, name, "huge-header", content))
    return out


def _depth_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.full((16, 16), 2.0, dtype=np.float32))
    return buffer.getvalue()


def write_cases(folder: Path) -> list[tuple[str, str, str]]:
    """Write every case into `folder`; return ``(modality, path, kind)`` rows."""
    rows = []
    for modality, name, kind, content in cases():
        path = folder / name
        path.write_bytes(content)
        rows.append((modality, str(path), kind))
    return rows
