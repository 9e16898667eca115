"""`anybind.eval.evaluate` on tiny stand-ins of every benchmark in its published layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import anybind
from anybind.errors import InputError, InputFileError, UnknownNameError
from anybind.eval import evaluate, list_datasets, load_protocol, to_markdown
from anybind.eval.datasets import ADAPTERS, H5Item, read_audiocaps, read_class_list, read_clotho
from anybind.zero_shot import load_class_list

from . import standins

FAST = {"resamples": 50}


@pytest.fixture(autouse=True)
def one_torch_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read(name: str, root: Path, variant: str | None = None) -> list:  # type: ignore[type-arg]
    protocol = load_protocol(name)
    return ADAPTERS[protocol.layout](root, protocol, read_class_list(protocol), variant)


def test_every_shipped_protocol_parses() -> None:
    assert list_datasets() == ["audiocaps", "clotho", "esc50", "imagefolder", "modelnet40", "nyu-depth-v2",
                               "scanobjectnn", "sunrgbd", "urbansound8k"]
    for name in list_datasets():
        protocol = load_protocol(name)
        if protocol.class_list:
            load_class_list(protocol.class_list)


def test_esc50_layout_folds_and_mean_of_folds(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.esc50(tmp_path / "ESC-50-master")
    samples = read("esc50", root)
    assert len(samples) == 10 and {s.split for s in samples} == {f"fold{i}" for i in range(1, 6)}
    assert samples[1].id == "audio/1-1011-A-1.wav" and samples[1].label == 1
    report = evaluate("esc50", root, tiny_model, **FAST)
    (top1,) = report["metrics"]
    assert top1["n"] == 10 and set(top1["per_split"]) == {f"fold{i}" for i in range(1, 6)}
    assert top1["value"] == pytest.approx(np.mean(list(top1["per_split"].values())))
    assert top1["ci95"][0] <= top1["value"] <= top1["ci95"][1]
    protocol = report["protocol"]
    assert protocol["templates"] == ["This is a sound of {}"] and protocol["class_names"][11] == "sea waves"
    assert protocol["tuned"] is False and protocol["preprocess"]["sample_rate"] == 16000
    one = evaluate("esc50", root, tiny_model, split="fold2", **FAST)
    assert one["metrics"][0]["n"] == 2 and "per_split" not in one["metrics"][0]
    json.dumps(report)  # JSON-ready


def test_urbansound8k_layout(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.urbansound8k(tmp_path / "UrbanSound8K")
    samples = read("urbansound8k", root)
    assert [s.id for s in samples[:2]] == ["audio/fold1/1001-3-0-0.wav", "audio/fold1/1001-8-0-0.wav"]
    assert [s.label for s in samples[:2]] == [3, 8]
    report = evaluate("urbansound8k", root, tiny_model, split="1,fold3", **FAST)
    assert report["metrics"][0]["n"] == 4 and set(report["metrics"][0]["per_split"]) == {"fold1", "fold3"}


def test_modelnet40_layout_and_tuning_only_on_train(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    labels = load_class_list("modelnet40").labels
    root = standins.modelnet40(tmp_path, labels)
    standins.write_off(root / "airplane" / "test" / "airplane_0003.off", seed=7, glued_header=True)  # ModelNet's 'OFF6 8 0'
    samples = read("modelnet40", tmp_path)  # ROOT may be the folder holding ModelNet40/
    assert {(s.split, s.label) for s in samples} == {("train", 0), ("test", 0), ("train", 1), ("test", 1)}
    assert "airplane/test/airplane_0003.off" in {s.id for s in samples}
    report = evaluate("modelnet40", root, tiny_model, **FAST)
    assert report["metrics"][0]["n"] == 5 and report["protocol"]["loader_options"]["num_points"] == 1024
    assert report["protocol"]["variant"] == "meshes" and report["protocol"]["encoder_args"]["method"] == "realistic"
    with pytest.raises(InputError, match="refusing to tune on 'test', the split being reported"):
        evaluate("modelnet40", root, tiny_model, tune_split="test", **FAST)
    before = tiny_model.encoder("pointcloud").view_weights.clone()
    tuned = evaluate("modelnet40", root, tiny_model, tune_split="train", **FAST)
    assert tuned["protocol"]["tuned"] is True and tuned["protocol"]["tuned_on"] == "train"
    assert len(tuned["protocol"]["view_weights"]) == 10 and tuned["protocol"]["num_tuning_items"] == 4
    assert torch.equal(tiny_model.encoder("pointcloud").view_weights, before)  # the model is left as it was


def test_modelnet40_pointclip_hdf5_copy(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.modelnet40_hdf5(tmp_path / "modelnet40_ply_hdf5_2048")
    samples = read("modelnet40", root)
    assert [(s.id, s.label, s.split) for s in samples[2:]] == [
        ("ply_data_test0.h5#0", 8, "test"), ("ply_data_test0.h5#1", 39, "test"), ("ply_data_test0.h5#2", 0, "test")]
    report = evaluate("modelnet40", root, tiny_model, **FAST)
    assert report["metrics"][0]["n"] == 3 and report["protocol"]["variant"] == "hdf5_2048"


def test_scanobjectnn_h5_layout(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.scanobjectnn(tmp_path)
    samples = read("scanobjectnn", root, "OBJ_ONLY")
    assert [(s.split, s.label) for s in samples] == [("training", 0), ("training", 4), ("training", 4),
                                                     ("test", 0), ("test", 4), ("test", 14)]
    assert isinstance(samples[3].item, H5Item) and samples[3].item.read().shape == (2048, 3)
    report = evaluate("scanobjectnn", root, tiny_model, **FAST)
    assert report["metrics"][0]["n"] == 3 and report["protocol"]["variant"] == "OBJ_ONLY"
    with pytest.raises(InputFileError, match="expected the PB_T50_RS training file"):
        evaluate("scanobjectnn", root, tiny_model, variant="PB_T50_RS", **FAST)


def test_nyu_depth_v2_mat_layout(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.nyu_depth_v2(tmp_path / "nyu")
    samples = read("nyu-depth-v2", root)
    # sceneTypes bedroom, kitchen, basement | bedroom, office, cafe; the last three are the test split.
    assert [(s.split, s.label) for s in samples] == [("train", 0), ("train", 1), ("train", 9),
                                                     ("test", 0), ("test", 5), ("test", 9)]
    assert samples[0].item.read().shape == (24, 32)  # transposed back to [H, W]
    report = evaluate("nyu-depth-v2", root, tiny_model, **FAST)
    assert report["metrics"][0]["n"] == 3 and report["protocol"]["preprocess"]["holes"] == "clip"


def test_sunrgbd_layout_and_bit_rotated_depth(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.sunrgbd(tmp_path)
    samples = read("sunrgbd", root)
    found = {s.id: (s.split, s.label, dict(s.options)) for s in samples}
    assert len(found) == 4  # the 'garage' scene is not one of the 19 classes
    assert found["kv1/NYUdata/NYU0001"][:2] == ("train", 1)
    assert found["realsense/lg/2014_10_24-13_40_33-1311000073"][2] == {"camera": "realsense", "focal_length": 529.5}
    report = evaluate("sunrgbd", root, tiny_model, **FAST)
    assert report["metrics"][0]["n"] == 3 and report["protocol"]["loader_options"] == {"format": "sunrgbd"}


def test_audiocaps_and_clotho_retrieval(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    caps = read_audiocaps(standins.audiocaps(tmp_path / "audiocaps"), "test")
    assert len(caps.clips) == 2 and caps.missing == ["missing0000"] and caps.caption_clip == [0, 0, 1, 1]
    report = evaluate("audiocaps", tmp_path / "audiocaps", tiny_model, **FAST)
    names = [m["name"] for m in report["metrics"]]
    assert names == [f"{d} {m}" for d in ("text->audio", "audio->text") for m in ("R@1", "R@5", "R@10", "mAP@10")]
    assert report["protocol"]["missing_clips"] == 1
    assert all(m["value"] == 1.0 for m in report["metrics"] if "R@5" in m["name"])  # 2 clips, 4 captions
    clotho = read_clotho(standins.clotho(tmp_path / "clotho"), "evaluation")
    assert len(clotho.clips) == 3 and len(clotho.captions) == 15 and clotho.caption_clip[5:10] == [1] * 5
    out = evaluate("clotho", tmp_path / "clotho", tiny_model, **FAST)
    assert out["metrics"][0]["n"] == 15 and out["metrics"][4]["n"] == 3


def test_imagefolder_and_prompt_tuning_on_a_separate_split(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.imagefolder(tmp_path / "photos")
    report = evaluate("imagefolder", root, tiny_model, modality="image", split="test", tune_split="val", **FAST)
    assert report["protocol"]["class_names"] == ["blue boat", "red car"]
    assert report["protocol"]["tuned_on"] == "val" and report["metrics"][0]["n"] == 4
    markdown = to_markdown(report)
    assert "| top1 |" in markdown and "tuned: yes, on `val`" in markdown
    with pytest.raises(InputError, match="`modality`: imagefolder holds any modality"):
        evaluate("imagefolder", root, tiny_model, split="test")


def test_tuning_split_overlapping_the_reported_one_is_refused(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.esc50(tmp_path / "esc")
    with pytest.raises(InputError, match="`tune_split`: 'fold1' shares 2 item"):
        evaluate("esc50", root, tiny_model, split="all", tune_split="fold1", **FAST)
    report = evaluate("esc50", root, tiny_model, split="fold2,fold3", tune_split="fold1", **FAST)
    assert report["protocol"]["tuned_on"] == "fold1" and report["protocol"]["num_tuning_items"] == 2


def test_compare_lists_published_numbers_with_sources(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.esc50(tmp_path / "esc")
    report = evaluate("esc50", root, tiny_model, split="fold1", compare="630k-audioset-best.pt", **FAST)
    (entry,) = report["published"]
    assert entry["value"] == 0.9275 and "LAION-AI/CLAP README" in entry["source"] and entry["same_split"]
    assert "92.75 (630k-audioset-best.pt, split fold1)" in to_markdown(report)
    every_fold = evaluate("esc50", root, tiny_model, split="all", compare="630k-audioset-best.pt", **FAST)
    assert "92.75 (630k-audioset-best.pt, split fold1, not the split reported here)" in to_markdown(every_fold)
    assert evaluate("esc50", root, tiny_model, split="fold1", compare=True, **FAST)["published"] == []


@pytest.mark.parametrize("dataset, root, options, error, words", [
    ("esc51", "@", {}, UnknownNameError, "unknown evaluation dataset 'esc51'; did you mean 'esc50'"),
    ("esc50", "@missing", {}, InputFileError, "`root`: expected the ESC-50 folder"),
    ("esc50", "@", {}, InputFileError, "`root`: expected the dataset's CSV at"),
    ("esc50", "@esc", {"split": "fold9"}, InputError, "`split`: unknown split(s) 'fold9'"),
    ("esc50", "@esc", {"modality": "image"}, InputError, "`modality`: esc50 is audio, got 'image'"),
    ("esc50", "@esc", {"resamples": 0}, InputError, "`resamples`: expected a positive integer"),
    ("clotho", "@", {"split": "test"}, InputError, "`split`: expected one of development, validation, evaluation"),
    ("clotho", "@", {"tune_split": "validation"}, InputError, "clotho retrieval has nothing to tune"),
])
def test_bad_evaluation_inputs(tiny_model, tmp_path, dataset, root, options, error, words) -> None:  # type: ignore[no-untyped-def]
    if root == "@esc":
        root = standins.esc50(tmp_path / "esc")
    elif root == "@missing":
        root = tmp_path / "nothing-here"
    else:
        root = tmp_path
    with pytest.raises(error) as caught:
        evaluate(dataset, root, tiny_model, **options)
    assert words in str(caught.value)


def test_esc50_csv_that_contradicts_the_class_list_is_refused(tiny_model: anybind.BoundModel, tmp_path: Path) -> None:
    root = standins.esc50(tmp_path / "esc")
    csv_path = root / "meta" / "esc50.csv"
    csv_path.write_text(csv_path.read_text().replace(",1,rooster,", ",1,dog,", 1))
    with pytest.raises(InputFileError, match=r"meta/esc50.csv line 3: target 1 does not match category 'dog'"):
        evaluate("esc50", root, tiny_model)
