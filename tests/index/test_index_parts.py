"""Scale-out embedding: torchrun ranks write parts (2 gloo processes == 1 process), restarts, merge checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import anybind.index.parts as parts_module
from anybind import Index
from anybind.cli import main
from anybind.errors import AnchorMismatchError, InputError, InputFileError
from anybind.index.parts import collect_parts, embed_parts, merge_parts, plan_parts

TEXTS = [f"caption {i} of a small thing" for i in range(7)]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, list[str]]:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return {"image": sorted(str(p) for p in folder.iterdir()), "text": TEXTS}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_plan_is_deterministic_disjoint_and_independent_of_world_size() -> None:
    plan = plan_parts({"image": list("abcde"), "text": list("xyz")}, part_rows=2)
    assert [(p.modality, p.first, p.items) for p in plan.parts] == [
        ("image", 0, ["a", "b"]), ("image", 2, ["c", "d"]), ("image", 4, ["e"]), ("text", 5, ["x", "y"]),
        ("text", 7, ["z"])]
    for world_size in (1, 2, 3):
        numbers = sorted(p.number for rank in range(world_size) for p in plan.for_rank(rank, world_size))
        assert numbers == list(range(5))
    assert plan_parts({"image": list("abcde"), "text": list("xyz")}, part_rows=2).key == plan.key
    assert plan_parts({"image": list("abcdf"), "text": list("xyz")}, part_rows=2).key != plan.key


def test_two_gloo_processes_equal_one_process(inputs: dict[str, list[str]], tmp_path: Path) -> None:
    args = ["index", "build", "-i", "image", *inputs["image"], "-i", "text", *TEXTS, "--part-rows", "3",
            "--batch-size", "3", "--device", "cpu", "--keep-parts"]
    port = _free_port()
    workers = []
    for rank in range(2):  # as torchrun starts them, without the launcher process
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        workers.append(subprocess.Popen([sys.executable, "-m", "anybind.cli", args[0], args[1],
                                         str(tmp_path / "two.index"), *args[2:]], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "two.index.parts").glob("part-*.json"))]
    assert [r["part"] for r in records] == [0, 1, 2, 3, 4]  # 5 images + 7 texts in parts of <= 3, one modality each

    assert main([args[0], args[1], str(tmp_path / "one.index"), *args[2:]]) == 0
    two, one = Index.load(tmp_path / "two.index"), Index.load(tmp_path / "one.index")
    assert torch.equal(two.vectors(), one.vectors())  # same rows, same order, bit for bit
    assert [two.metadata(i) for i in two.ids] == [one.metadata(i) for i in one.ids]
    assert one.metadata(5) == {"id": 5, "modality": "text", "source": TEXTS[0]}
    plain = Index.build(parts_module_model(), {"image": inputs["image"], "text": TEXTS}, batch_size=3)
    assert (two.vectors() - plain.vectors()).abs().max() <= 1e-6  # the single-process Index.build path


def parts_module_model() -> Any:
    import anybind.cli.inputs as cli_embed

    return cli_embed._load_model("tiny", "cpu")


def test_a_rank_killed_mid_part_leaves_no_half_part_and_a_rerun_redoes_only_it(
        tiny_model: Any, inputs: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "run.parts"
    real_write = parts_module.atomic_write_bytes

    def dies_in_part_two(path: Path, data: bytes) -> Path:
        if path.name == "part-00002.jsonl":  # vectors of part 2 already written, its metadata not
            raise KeyboardInterrupt("killed")
        return real_write(path, data)

    monkeypatch.setattr(parts_module, "atomic_write_bytes", dies_in_part_two)
    with pytest.raises(KeyboardInterrupt):
        embed_parts(tiny_model, inputs, folder, part_rows=3)
    monkeypatch.setattr(parts_module, "atomic_write_bytes", real_write)
    assert not (folder / "part-00002.json").exists() and not (folder / "part-00002.jsonl").exists()
    assert not list(folder.glob(".*tmp"))  # no temp debris either
    with pytest.raises(InputFileError, match=r"3 of 5 part\(s\) are missing .*: part-00002, part-00003, part-00004"):
        merge_parts(folder, tmp_path / "x.index")

    (folder / "part-00001.npy").write_bytes(b"garbage")  # a finished part damaged later is redone too
    assert embed_parts(tiny_model, inputs, folder, part_rows=3) == {"embedded": 4, "skipped": 1}
    merge_parts(folder, tmp_path / "x.index")
    reference = Index.build(tiny_model, inputs)
    assert (Index.load(tmp_path / "x.index").vectors() - reference.vectors()).abs().max() <= 1e-6


def _retag(folder: Path, number: int, **changes: Any) -> None:
    path = folder / f"part-{number:05d}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(("damage", "error", "message"), [
    (lambda f: (f / "part-00001.json").unlink(), InputFileError,
     r"1 of 3 part\(s\) are missing in .*run.parts': part-00001; rerun the embedding"),
    (lambda f: _retag(f, 2, anchor_key="openclip:other:x"), AnchorMismatchError,
     r"part 2 was embedded with anchor openclip:other:x, part 0 with anchor openclip:tiny.*cannot be merged"),
    (lambda f: _retag(f, 1, plan="0" * 64), InputError, r"part 1 belongs to another run"),
    (lambda f: (f / "part-00000.npy").write_bytes(b"x"), InputFileError, r"part-00000.npy' is truncated or altered"),
    (lambda f: [p.unlink() for p in f.iterdir()], InputFileError, r"holds no finished parts"),
])
def test_merge_refuses_bad_parts(tiny_model: Any, tmp_path: Path, damage: Any, error: type, message: str) -> None:
    folder = tmp_path / "run.parts"
    embed_parts(tiny_model, {"text": TEXTS}, folder, part_rows=3)
    damage(folder)
    with pytest.raises(error, match=message):
        collect_parts(folder)
    assert not (tmp_path / "x.index").exists()


def test_merge_command_and_parquet_export(tiny_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "run.parts"
    for rank in range(2):  # two ranks of one run, written one after the other
        embed_parts(tiny_model, {"text": TEXTS}, folder, rank=rank, world_size=2, part_rows=2)
    assert main(["index", "merge", str(folder), str(tmp_path / "m.index"), "--parquet", str(tmp_path / "m.parquet"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 7 and not folder.exists()
    table = pq.read_table(tmp_path / "m.parquet").to_pydict()
    assert table == {"id": list(range(7)), "modality": ["text"] * 7, "source": TEXTS}
