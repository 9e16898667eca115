"""Manifest reading: every bad row named by line, skip_bad_rows, duplicates, splits, CSV and JSONL."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from anybind.errors import InputError, InputFileError
from anybind.train.manifest import read_pairs, seeded_is_val, split_pairs


def _write_inputs(folder: Path) -> None:
    (folder / "in").mkdir(parents=True, exist_ok=True)
    for index in range(3):
        np.save(folder / "in" / f"x{index}.npy", np.ones(4, dtype=np.float32))
    (folder / "in" / "corrupt.npy").write_bytes(b"not numpy at all")
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "red.png")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")


def _load_npy(paths: list[Path]) -> None:
    for path in paths:
        try:
            np.load(path, allow_pickle=False)
        except ValueError as error:
            raise InputFileError(f"{path}: {error}") from None


def _manifest(folder: Path, body: str, name: str = "pairs.csv") -> Path:
    _write_inputs(folder)
    path = folder / name
    path.write_text(body)
    return path


GOOD = "input,image,caption\nin/x0.npy,,a dog\nin/x1.npy,red.png,\n"


@pytest.mark.parametrize(("body", "error", "message"), [
    ("input,caption\nin/missing.npy,a dog\n", InputFileError,
     r"line 2: `input` file '.*in/missing\.npy' does not exist \(set `data\.skip_bad_rows: true`"),
    ("input,caption\nin/x0.npy,a dog\nin/corrupt.npy,a cat\n", InputFileError,
     r"line 3: `input` file '.*corrupt\.npy' could not be loaded"),
    ("input,image\nin/x0.npy,nowhere.png\n", InputFileError, r"line 2: `image` file '.*nowhere\.png' does not exist"),
    ("input,image\nin/x0.npy,broken.png\n", InputFileError, r"line 2: image file '.*broken\.png' is not a readable image"),
    ("input,caption\nin/x0.npy,a dog\nin/x0.npy,a dog\n", InputError, r"line 3: duplicates line 2"),
    ("input,image,caption\nin/x0.npy,red.png,a dog\n", InputError,
     r"line 2: expected exactly one of `image`, `caption`, got `image`, `caption`"),
    ("input,caption\nin/x0.npy,\n", InputError, r"line 2: expected exactly one of `image`, `caption`, got none"),
    ("input,caption,split\nin/x0.npy,a dog,test\n", InputError, r"line 2: `split` must be one of train, val, got 'test'"),
    ("path,caption\nin/x0.npy,a dog\n", InputError, r"lacks column\(s\) 'input'; found columns 'path', 'caption'"),
    ("input,label\nin/x0.npy,a dog\n", InputError, r"lacks column\(s\) 'image or caption'"),
    ("input,caption\n", InputError, r"has no data rows"),
    ("input,caption\nin/x0.npy,a dog,extra\n", InputFileError, r"line 2: more fields than the header's 2 columns"),
])
def test_bad_manifests_name_the_problem(tmp_path: Path, body: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        read_pairs(_manifest(tmp_path, body), load_inputs=_load_npy)


@pytest.mark.parametrize(("name", "body", "message"), [
    ("pairs.jsonl", '{"input": "in/x0.npy", "caption": "a"}\n{"input": broken\n', r"line 2: not valid JSON"),
    ("pairs.jsonl", '["in/x0.npy"]\n', r"line 1: expected a JSON object, got list"),
    ("pairs.txt", "x", r"`data\.manifest`: expected a \.csv or \.jsonl manifest"),
])
def test_bad_manifest_files(tmp_path: Path, name: str, body: str, message: str) -> None:
    with pytest.raises(InputFileError, match=message):
        read_pairs(_manifest(tmp_path, body, name))


def test_missing_manifest_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=re.escape(f"`data.manifest`: manifest {str(tmp_path / 'no.csv')!r} does not exist")):
        read_pairs(tmp_path / "no.csv")


def test_skip_bad_rows_skips_and_counts(tmp_path: Path) -> None:
    body = GOOD + "in/missing.npy,,a cat\nin/corrupt.npy,,a bird\nin/x0.npy,,a dog\nin/x2.npy,broken.png,\n"
    result = read_pairs(_manifest(tmp_path, body), skip_bad_rows=True, load_inputs=_load_npy)
    assert [p.line for p in result.pairs] == [2, 3]
    assert sorted(int(where.rsplit(" ", 1)[1]) for where, _ in result.skipped) == [4, 5, 6, 7]
    image_pair = result.pairs[1]
    assert image_pair.partner_kind == "image" and image_pair.partner == str(tmp_path / "red.png")
    assert image_pair.input == tmp_path / "in" / "x1.npy"


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "")
    path.write_bytes("\ufeffinput,caption\nin/x0.npy,a dog\n".encode())
    assert read_pairs(path).pairs[0].partner == "a dog"


def test_jsonl_reads_like_csv(tmp_path: Path) -> None:
    body = '{"input": "in/x0.npy", "caption": "a dog"}\n\n{"input": "in/x1.npy", "image": "red.png"}\n'
    pairs = read_pairs(_manifest(tmp_path, body, "pairs.jsonl")).pairs
    assert [(p.line, p.partner_kind) for p in pairs] == [(1, "caption"), (3, "image")]


def test_split_by_column_and_by_seeded_rule(tmp_path: Path) -> None:
    body = "input,caption,split\nin/x0.npy,a,train\nin/x1.npy,b,val\nin/x2.npy,c,train\n"
    train, val = split_pairs(read_pairs(_manifest(tmp_path, body)).pairs, 0.5, seed=0)
    assert [p.line for p in train] == [2, 4] and [p.line for p in val] == [3]
    values = [f"clip{i}.wav" for i in range(2000)]
    held = [v for v in values if seeded_is_val(v, 7, 0.2)]
    assert 0.17 < len(held) / len(values) < 0.23
    assert held == [v for v in values if seeded_is_val(v, 7, 0.2)]  # deterministic
    assert held != [v for v in values if seeded_is_val(v, 8, 0.2)]  # depends on the seed


def test_generic_columns_for_other_trainers(tmp_path: Path) -> None:
    body = "image,caption\nred.png,a red square\n"
    pairs = read_pairs(_manifest(tmp_path, body), input_column="image", partner_columns=("caption",)).pairs
    assert pairs[0].input == tmp_path / "red.png" and pairs[0].partner == "a red square"
