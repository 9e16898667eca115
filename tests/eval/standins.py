"""Tiny stand-ins of each benchmark in its exact published layout (a few files, synthetic content).

Layouts checked against the datasets' own distributions: ESC-50 master.zip (audio/, meta/esc50.csv),
UrbanSound8K.tar.gz (audio/foldN/, metadata/UrbanSound8K.csv), ModelNet40.zip (<class>/{train,test}/
*.off), ScanObjectNN h5_files/main_split{,_nobg}/ (data, label), NYU-Depth v2 nyu_depth_v2_labeled.mat
(MATLAB v7.3 = HDF5 with a 512-byte user block; depths stored [N, W, H]; sceneTypes as references to
uint16 char arrays) and splits.mat (1-based trainNdxs / testNdxs), SUN RGB-D (SUNRGBD/<sensor>/.../
{depth/*.png, intrinsics.txt, scene.txt}, SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat with
alltrain/alltest cell arrays of '/n/fs/sun3d/data/SUNRGBD/...' paths), AudioCaps <split>.csv and
Clotho clotho_captions_<split>.csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

RATE = 16000


def write_wav(path: Path, seed: int, seconds: float = 0.25) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    soundfile.write(path, (0.1 * rng.standard_normal(int(RATE * seconds))).astype(np.float32), RATE)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def esc50(root: Path) -> Path:
    """5 folds x 2 clips: targets 0 (dog) and 1 (rooster); file names {fold}-{src}-{take}-{target}.wav."""
    rows = []
    for fold in range(1, 6):
        for target, category in ((0, "dog"), (1, "rooster")):
            name = f"{fold}-{100 + fold}{target}-A-{target}.wav"
            write_wav(root / "audio" / name, seed=fold * 10 + target)
            rows.append([name, fold, target, category, "True", f"{100 + fold}{target}", "A"])
    write_csv(root / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    return root


def urbansound8k(root: Path) -> Path:
    """3 folds x 2 clips (classID 3 dog_bark, 8 siren) in audio/foldN/."""
    rows = []
    for fold in range(1, 4):
        for class_id, name in ((3, "dog_bark"), (8, "siren")):
            file = f"{1000 + fold}-{class_id}-0-0.wav"
            write_wav(root / "audio" / f"fold{fold}" / file, seed=100 + fold * 10 + class_id)
            rows.append([file, 1000 + fold, 0.0, 0.25, 1, fold, class_id, name])
    write_csv(root / "metadata" / "UrbanSound8K.csv",
              ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    return root


def write_off(path: Path, seed: int, glued_header: bool = False) -> None:
    """A small random closed mesh (a jittered octahedron) as OFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vertices = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    vertices *= rng.uniform(0.5, 1.5, size=(6, 1))
    faces = [(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)]
    counts = f"{len(vertices)} {len(faces)} 0"
    lines = [f"OFF{counts}"] if glued_header else ["OFF", counts]
    lines += [" ".join(f"{v:.6f}" for v in vertex) for vertex in vertices] + [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def modelnet40(root: Path, labels: tuple[str, ...]) -> Path:
    """All 40 class folders with train/ and test/; meshes only for airplane and bathtub."""
    for label in labels:
        for split in ("train", "test"):
            (root / "ModelNet40" / label / split).mkdir(parents=True, exist_ok=True)
    for index, label in enumerate(labels[:2]):
        for split, count in (("train", 2), ("test", 2)):
            for number in range(1, count + 1):
                write_off(root / "ModelNet40" / label / split / f"{label}_{number:04d}.off", seed=index * 10 + number)
    return root / "ModelNet40"


def modelnet40_hdf5(root: Path) -> Path:
    """modelnet40_ply_hdf5_2048: {train,test}_files.txt naming ply_data_<split>0.h5 (label [N, 1])."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    for split, labels in (("train", [5, 8]), ("test", [8, 39, 0])):
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as handle:
            handle["data"] = rng.standard_normal((len(labels), 2048, 3)).astype(np.float32)
            handle["label"] = np.array(labels, dtype=np.uint8).reshape(-1, 1)
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    return root


def scanobjectnn(root: Path) -> Path:
    """h5_files/main_split_nobg/{training,test}_objectdataset.h5 with 2048-point clouds."""
    import h5py

    rng = np.random.default_rng(0)
    for split, labels in (("training", [0, 4, 4]), ("test", [0, 4, 14])):
        path = root / "h5_files" / "main_split_nobg" / f"{split}_objectdataset.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as handle:
            handle["data"] = rng.standard_normal((len(labels), 2048, 3)).astype(np.float32)
            handle["label"] = np.array(labels, dtype=np.int64)
            handle["mask"] = np.zeros((len(labels), 2048), dtype=np.int64)
    return root


NYU_SCENES = ["bedroom", "kitchen", "basement", "bedroom", "office", "cafe"]  # basement, cafe -> others


def nyu_depth_v2(root: Path) -> Path:
    """nyu_depth_v2_labeled.mat (HDF5 with a MATLAB user block) and splits.mat (MATLAB v5)."""
    import h5py
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    height, width = 24, 32
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w", userblock_size=512) as handle:
        # MATLAB stores column-major: an [H, W] map is read by h5py as [W, H].
        handle["depths"] = rng.uniform(0.7, 9.0, size=(len(NYU_SCENES), width, height)).astype(np.float32)
        refs = handle.create_group("#refs#")
        references = []
        for index, scene in enumerate(NYU_SCENES):
            refs[f"s{index}"] = np.array([[ord(c)] for c in scene], dtype=np.uint16)
            references.append(refs[f"s{index}"].ref)
        handle.create_dataset("sceneTypes", data=np.array([references], dtype=h5py.ref_dtype))
    with open(root / "nyu_depth_v2_labeled.mat", "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2012 HDF5 schema 1.00 .")
    savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [2], [3]], dtype=np.float64),
                                  "testNdxs": np.array([[4], [5], [6]], dtype=np.float64)})
    return root


def sunrgbd_png(path: Path, millimetres: np.ndarray) -> None:
    """A depth PNG in SUN RGB-D's bit-rotated encoding of `millimetres`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = millimetres.astype(np.uint32)
    Image.fromarray(((value << 3) | (value >> 13)).astype(np.uint16)).save(path)


SUN_SCENES = {"kv1/NYUdata/NYU0001": ("bedroom", "train"), "kv1/NYUdata/NYU0002": ("kitchen", "test"),
              "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize": ("office", "test"),
              "realsense/lg/2014_10_24-13_40_33-1311000073": ("bathroom", "test"),
              "xtion/sun3ddata/mit_32_d507/d507_2/d507_2_1": ("garage", "test")}  # not one of the 19 classes


def sunrgbd(root: Path) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    for number, (relative, (scene, _)) in enumerate(SUN_SCENES.items()):
        folder = root / "SUNRGBD" / relative
        sunrgbd_png(folder / "depth" / f"{number:04d}.png", rng.integers(500, 6000, size=(24, 32)))
        (folder / "image").mkdir(parents=True, exist_ok=True)
        (folder / "scene.txt").write_text(scene)
        (folder / "intrinsics.txt").write_text("529.5 0 365 \n0 529.5 265 \n0 0 1 \n")
    cells = {split: np.array([f"/n/fs/sun3d/data/SUNRGBD/{r}/" for r, (_, s) in SUN_SCENES.items() if s == split],
                             dtype=object).reshape(1, -1) for split in ("train", "test")}
    toolbox = root / "SUNRGBDtoolbox" / "traintestSUNRGBD"
    toolbox.mkdir(parents=True, exist_ok=True)
    savemat(toolbox / "allsplit.mat", {"alltrain": cells["train"], "alltest": cells["test"]})
    return root


def audiocaps(root: Path) -> Path:
    """test.csv: 3 clips x 2 captions listed, audio for 2 of them in test/<youtube_id>.wav."""
    rows = []
    for clip, youtube_id in enumerate(["abcdefghijk", "lmnopqrstuv", "missing0000"]):
        for caption in range(2):
            rows.append([100 + 2 * clip + caption, youtube_id, 30, f"caption {caption} of clip {clip}"])
        if youtube_id != "missing0000":
            write_wav(root / "test" / f"{youtube_id}.wav", seed=clip)
    write_csv(root / "test.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    return root


def clotho(root: Path) -> Path:
    """clotho_captions_evaluation.csv with 3 clips x 5 captions, audio in evaluation/."""
    rows = []
    for clip in range(3):
        name = f"clip number {clip}.wav"
        write_wav(root / "evaluation" / name, seed=50 + clip)
        rows.append([name] + [f"sound {clip} described {k}" for k in range(5)])
    write_csv(root / "clotho_captions_evaluation.csv", ["file_name"] + [f"caption_{k}" for k in range(1, 6)], rows)
    return root


def imagefolder(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for split in ("val", "test"):
        for label in ("red_car", "blue_boat"):
            for number in range(2):
                path = root / split / label / f"{number}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return root
