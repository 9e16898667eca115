"""Bad input to `Index` and to saved index folders: (bad input, expected error and message) tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anybind import AnchorMismatchError, Embeddings, Index, InputError, InputFileError
from anybind.index import choose_index_factory

KEY = "test:anchor"


def unit(n: int, dim: int = 8) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(n)), dim=1)


def filled() -> Index:
    index = Index(KEY, 8)
    index.add(unit(4), ids=[0, 1, 2, "x"], modality="image")
    return index


NAN_QUERY = unit(2).clone()
NAN_QUERY[1, 3] = float("nan")

BAD_CALLS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("dim mismatch on add", lambda: filled().add(unit(2, 9), modality="image"), InputError,
     r"`vectors`: expected shape \[N, 8\] \(the index's dimension\), got \[2, 9\]"),
    ("dim mismatch on search", lambda: filled().search(unit(2, 16)), InputError,
     r"`queries`: expected shape \[N, 8\].*got \[2, 16\]"),
    ("anchor mismatch on add", lambda: filled().add(Embeddings.wrap(unit(2), "other:anchor"), modality="image"),
     AnchorMismatchError, r"`vectors` was embedded with anchor other:anchor, expected anchor test:anchor"),
    ("anchor mismatch on search", lambda: filled().search(Embeddings.wrap(unit(1), "other:anchor")),
     AnchorMismatchError, r"`queries` was embedded with anchor other:anchor"),
    ("k = 0", lambda: filled().search(unit(1), k=0), InputError, r"`k`: expected a positive integer, got 0"),
    ("k < 0", lambda: filled().search(unit(1), k=-3), InputError, r"`k`: expected a positive integer, got -3"),
    ("k not int", lambda: filled().search(unit(1), k=2.5), InputError, r"`k`: expected a positive integer, got 2.5"),
    ("empty index", lambda: Index(KEY, 8).search(unit(1)), InputError, r"`index` is empty"),
    ("NaN queries", lambda: filled().search(NAN_QUERY), InputError,
     r"`queries`: expected finite vectors, got 1 row\(s\) with NaN/inf"),
    ("NaN vectors", lambda: filled().add(NAN_QUERY, modality="image"), InputError, r"`vectors`: expected finite"),
    ("zero vector", lambda: filled().add(torch.zeros(1, 8), modality="image"), InputError, r"all-zero vector"),
    ("integer vectors", lambda: filled().add(torch.ones(1, 8, dtype=torch.long), modality="image"), InputError,
     r"expected floating-point vectors, got dtype torch.int64"),
    ("not a tensor", lambda: filled().add([[0.1] * 8], modality="image"), InputError, r"`vectors`: expected a \[N, 8\]"),
    ("duplicate id in index", lambda: filled().add(unit(1), ids=["x"], modality="image"), InputError,
     r"`ids`: duplicate id 'x' \(already in the index\)"),
    ("duplicate id in call", lambda: filled().add(unit(2), ids=[7, 7], modality="image"), InputError,
     r"`ids`: duplicate id 7 \(twice in `ids`\)"),
    ("bad id type", lambda: filled().add(unit(1), ids=[1.5], modality="image"), InputError, r"expected int or str ids"),
    ("ids length", lambda: filled().add(unit(2), ids=[9], modality="image"), InputError, r"expected a list of 2 ids"),
    ("no modality", lambda: filled().add(unit(1), modality=""), InputError, r"`modality`: expected"),
    ("reserved metadata", lambda: filled().add(unit(1), metadata=[{"id": 3}], modality="image"), InputError,
     r"`metadata\[0\]`: keys \['id'\] are reserved"),
    ("metadata not json", lambda: filled().add(unit(1), metadata=[{"f": object()}], modality="image"), InputError,
     r"`metadata\[0\]`: expected JSON-serializable"),
    ("absent modality filter", lambda: filled().search(unit(1), modality="audio"), InputError,
     r"`modality`: the index has no rows of modality 'audio'; it holds image: 4"),
    ("remove unknown", lambda: filled().remove([0, "nope"]), InputError, r"`ids`: 1 id\(s\) not in the index"),
    ("unknown backend", lambda: Index(KEY, 8, backend="annoy"), InputError, r"`backend`: expected one of"),
    ("unknown option", lambda: Index(KEY, 8, backend="fast", backend_options={"nprobe": 3}), InputError,
     r"`backend_options`: unknown option\(s\) nprobe for backend 'fast'; allowed: candidates"),
    ("bad anchor", lambda: Index(123, 8), InputError, r"`anchor`: expected a BoundModel"),
    ("bad dim", lambda: Index(KEY, 0), InputError, r"`dim`: expected the vector width"),
    ("budget too small", lambda: choose_index_factory(10**9, 512, "1GB"), InputError,
     r"`memory_budget`: .* cannot hold 1000000000 vectors"),
    ("budget unparsable", lambda: choose_index_factory(10, 8, "lots"), InputError,
     r"`memory_budget`: expected a positive byte count"),
]


@pytest.mark.parametrize(("call", "error", "message"), [case[1:] for case in BAD_CALLS],
                         ids=[case[0] for case in BAD_CALLS])
def test_bad_input(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def _truncate(path: Path) -> None:
    shard = next(path.glob("vectors-*.npy"))
    shard.write_bytes(shard.read_bytes()[:-40])


def _tamper(path: Path) -> None:
    shard = next(path.glob("vectors-*.npy"))
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))


def _tamper_metadata(path: Path) -> None:
    meta = next(path.glob("metadata-*.jsonl"))
    meta.write_text(meta.read_text().replace('"x"', '"y"'))


def _newer_version(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))


def _corrupt_manifest(path: Path) -> None:
    (path / "manifest.json").write_text("{not json")


def _delete_shard(path: Path) -> None:
    next(path.glob("vectors-*.npy")).unlink()


BAD_FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated shard", _truncate, r"vectors-.*\.npy' is truncated or altered: \d+ bytes, expected \d+"),
    ("tampered shard", _tamper, r"vectors-.*\.npy' fails its sha256 checksum"),
    ("tampered metadata", _tamper_metadata, r"metadata-.*\.jsonl' fails its sha256 checksum"),
    ("newer format", _newer_version, r"saved by a newer anybind \(index format version 2, this anybind reads up "
                                     r"to 1\); upgrade anybind"),
    ("corrupt manifest", _corrupt_manifest, r"manifest.json' is unreadable or corrupt"),
    ("missing shard", _delete_shard, r"vectors-.*\.npy' is missing"),
]


@pytest.mark.parametrize(("damage", "message"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_index_files(tmp_path: Path, damage: Callable[[Path], None], message: str) -> None:
    path = tmp_path / "a.index"
    filled().save(path)
    damage(path)
    with pytest.raises(InputFileError, match=message):
        Index.load(path)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"`path`: index '.*nowhere' does not exist"):
        Index.load(tmp_path / "nowhere")
    with pytest.raises(InputFileError, match=r"is not an anybind index \(no manifest.json\)"):
        Index.load(tmp_path)
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(InputFileError, match=r"is not empty and holds no index .* refusing to write into it"):
        filled().save(tmp_path)
    with pytest.raises(InputFileError, match=r"exists and is not an index folder"):
        filled().save(tmp_path / "mine.txt")
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_unverified_load_skips_checksums(tmp_path: Path) -> None:
    filled().save(tmp_path / "a.index")
    _tamper(tmp_path / "a.index")
    assert len(Index.load(tmp_path / "a.index", verify=False)) == 4
    assert np.isfinite(Index.load(tmp_path / "a.index", verify=False).vectors().numpy()).any()
