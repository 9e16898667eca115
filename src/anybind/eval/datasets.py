"""Dataset adapters: each reads one benchmark exactly as it is distributed into `Sample` records.

The protocol constants (class list, templates, splits, loader options, sources) are data in
``configs/eval/datasets/<name>.yaml`` (`EvalProtocol`); the code here only parses the published
file layouts. Classification adapters return every split's samples (so a tuning split can be
checked for overlap with the reported one); retrieval adapters return one split's clips and captions.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anybind.config import load_named
from anybind.errors import ConfigError, InputError, InputFileError, MissingDependencyError
from anybind.zero_shot import ClassList, load_class_list

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def require_module(name: str, package: str, why: str) -> Any:
    """Import optional module `name`, or raise `MissingDependencyError` naming the pip package."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(f"{why} needs the `{package}` package: pip install {package} "
                                     "(or anybind[eval])") from None


@dataclass(frozen=True)
class EvalProtocol:
    """One benchmark's protocol, read from ``configs/eval/datasets/<name>.yaml``."""

    name: str  # dataset name used on the command line, e.g. "esc50"
    title: str  # display name
    task: str  # "classification" or "retrieval"
    modality: str | None  # modality of the inputs (None: given by the caller, ImageFolder)
    layout: str  # which adapter parses the files (a key of `ADAPTERS`)
    splits: tuple[str, ...]  # split or fold names
    default_split: str  # reported when no split is given ("all": every split)
    aggregate: str  # "pooled" (one accuracy over all items) or "mean-of-folds"
    reference: str  # where the protocol comes from
    download: str  # where to get the data
    class_list: str | None = None  # configs/classes/<name>.yaml (None: from the folders)
    class_names: str = "classes"  # "classes" (plain words) or "labels_spaced" (labels, '_' -> ' ')
    templates: str | None = None  # template set in configs/templates (None: the modality's default)
    loader_options: dict = field(default_factory=dict)  # options for model.embed of every item
    variants: dict = field(default_factory=dict)  # variant name -> adapter-specific data
    default_variant: str | None = None
    version: int = 1


def load_protocol(name: str) -> EvalProtocol:
    """The protocol ``configs/eval/datasets/<name>.yaml``; unknown names raise with close matches."""
    protocol = load_named(EvalProtocol, "eval/datasets", name, "evaluation dataset")
    if protocol.task not in ("classification", "retrieval") or protocol.aggregate not in ("pooled", "mean-of-folds"):
        raise ConfigError(f"evaluation dataset {name!r}: `task` must be classification/retrieval and `aggregate` "
                          f"pooled/mean-of-folds, got {protocol.task!r}, {protocol.aggregate!r}")
    return protocol


@dataclass(frozen=True)
class H5Item:
    """One array inside an HDF5 file (read when its batch is embedded): ``file[key][index]``."""

    path: Path
    key: str
    index: int
    transpose: bool = False  # MATLAB v7.3 files store arrays transposed

    def read(self) -> np.ndarray:
        """The array, as float32 (depth in metres, points in the file's units)."""
        h5py = require_module("h5py", "h5py", "reading HDF5 datasets")
        with h5py.File(self.path, "r") as handle:
            array = np.asarray(handle[self.key][self.index], dtype=np.float32)
        return array.T if self.transpose else array


@dataclass(frozen=True)
class Sample:
    """One evaluation item: what `model.embed` takes, its class index and its split."""

    id: str  # stable identity (relative path, or "file#index"), used for overlap checks
    item: Any  # a file path, or an `H5Item`
    label: int  # class index (classification); clip index (retrieval)
    split: str  # split or fold name
    options: tuple[tuple[str, Any], ...] = ()  # loader options of this item only (e.g. its camera)


@dataclass
class RetrievalSet:
    """Clips and their captions for text<->audio retrieval."""

    clips: list[Sample]  # one per clip
    captions: list[str]  # every caption
    caption_clip: list[int]  # the index in `clips` of each caption's clip
    missing: list[str] = field(default_factory=list)  # clips listed in the CSV whose audio was not found


def class_names_of(protocol: EvalProtocol, class_list: ClassList) -> list[str]:
    """The names put in the prompts: the list's plain words, or its labels with '_' -> ' '."""
    if protocol.class_names == "labels_spaced":
        return [label.replace("_", " ") for label in class_list.labels]
    return list(class_list.classes)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputFileError(f"`root`: expected {what} at {str(path)!r}; is ROOT the dataset's top folder?")
    return path


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with open(_require(path, "the dataset's CSV"), newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(f"`root`: {str(path)!r} lacks column(s) {', '.join(missing)}; "
                                 f"got {', '.join(reader.fieldnames or [])}")
        return list(reader)


def _label_index(class_list: ClassList, label: str, where: str) -> int:
    if label not in class_list.labels:
        raise InputFileError(f"`root`: {where}: label {label!r} is not one of the {len(class_list.labels)} "
                             f"{class_list.name} classes")
    return class_list.labels.index(label)


@dataclass(frozen=True)
class ClipTableLayout:
    """Where a clip-classification dataset's metadata CSV keeps each field (one row per clip)."""

    csv: str  # the metadata CSV, relative to the dataset root
    file: str  # column of the clip's file name
    fold: str  # column of the fold number (the split is ``fold<N>``)
    target: str  # column of the numeric class id
    label: str  # column of the class name (checked against the class list and `target`)
    clip_dir: str  # folder of the clips, relative to the root; ``{fold}`` is replaced by the fold number


ESC50_LAYOUT = ClipTableLayout("meta/esc50.csv", "filename", "fold", "target", "category", "audio")
URBANSOUND8K_LAYOUT = ClipTableLayout("metadata/UrbanSound8K.csv", "slice_file_name", "fold", "classID", "class",
                                      "audio/fold{fold}")


def read_clip_table(root: Path, class_list: ClassList, layout: ClipTableLayout) -> list[Sample]:
    """A metadata CSV of clips (`layout`) -> one `Sample` per row, its split ``fold<N>``; a row whose class id
    and class name disagree raises `InputFileError` naming the line."""
    rows = _read_csv(root / layout.csv, (layout.file, layout.fold, layout.target, layout.label))
    samples = []
    for number, row in enumerate(rows, start=2):
        target, where = int(row[layout.target]), f"{layout.csv} line {number}"
        if _label_index(class_list, row[layout.label], where) != target:
            raise InputFileError(f"`root`: {where}: {layout.target} {target} does not match {layout.label} "
                                 f"{row[layout.label]!r}")
        fold = int(row[layout.fold])
        relative = f"{layout.clip_dir.format(fold=fold)}/{row[layout.file]}"
        samples.append(Sample(relative, _require(root / relative, "a clip"), target, f"fold{fold}"))
    return samples


def read_esc50(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """ESC-50: ``meta/esc50.csv`` rows (filename, fold, target, category) -> samples in ``audio/``."""
    return read_clip_table(root, class_list, ESC50_LAYOUT)


def read_urbansound8k(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """UrbanSound8K: ``metadata/UrbanSound8K.csv`` -> samples in ``audio/fold<N>/``."""
    return read_clip_table(root, class_list, URBANSOUND8K_LAYOUT)


def read_modelnet40_hdf5(root: Path, protocol: EvalProtocol) -> list[Sample]:
    """PointCLIP's ModelNet40 copy, ``modelnet40_ply_hdf5_2048``: ``{train,test}_files.txt`` list
    ``ply_data_<split><k>.h5`` files (``data`` [N, 2048, 3], ``label`` [N, 1]), read from ROOT by name."""
    h5py = require_module("h5py", "h5py", "modelnet40_ply_hdf5_2048")
    samples = []
    for split in protocol.splits:
        listing = _require(root / f"{split}_files.txt", f"the {split} file list")
        for line in listing.read_text().split():
            path = _require(root / Path(line).name, f"the h5 file listed in {listing.name}")
            with h5py.File(path, "r") as handle:
                labels = np.asarray(handle["label"]).reshape(-1)
            samples += [Sample(f"{path.name}#{i}", H5Item(path, "data", i), int(label), split)
                        for i, label in enumerate(labels)]
    return samples


def modelnet40_variant(root: Path, variant: str | None) -> str:
    """The ModelNet40 copy under `root`: as given, else ``hdf5_2048`` when its file lists exist, else ``meshes``."""
    return variant or ("hdf5_2048" if (root / "test_files.txt").is_file() else "meshes")


def read_modelnet40(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """ModelNet40: ``<class>/{train,test}/*.off`` (ROOT may also be the folder holding ``ModelNet40/``),
    or PointCLIP's ``modelnet40_ply_hdf5_2048`` copy (variant ``hdf5_2048``, found by its file lists)."""
    if variant not in (None, *protocol.variants):
        raise InputError(f"`variant`: expected one of {', '.join(protocol.variants)} for modelnet40, got {variant!r}")
    if modelnet40_variant(root, variant) == "hdf5_2048":
        return read_modelnet40_hdf5(root, protocol)
    if not (root / class_list.labels[0]).is_dir() and (root / "ModelNet40").is_dir():
        root = root / "ModelNet40"
    samples = []
    for label, name in enumerate(class_list.labels):
        folder = _require(root / name, f"the class folder {name!r}")
        for split in protocol.splits:
            for path in sorted((folder / split).glob("*.off")):
                samples.append(Sample(f"{name}/{split}/{path.name}", path, label, split))
    return samples


def read_scanobjectnn(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """ScanObjectNN: ``h5_files/<folder>/{training,test}<suffix>`` with ``data`` [N, 2048, 3] and ``label`` [N]."""
    h5py = require_module("h5py", "h5py", "ScanObjectNN's h5 files")
    name = variant or protocol.default_variant
    if name not in protocol.variants:
        raise InputError(f"`variant`: expected one of {', '.join(protocol.variants)} for scanobjectnn, got {name!r}")
    folder, suffix = protocol.variants[name]
    base = root / "h5_files" if (root / "h5_files").is_dir() else root
    samples = []
    for split in protocol.splits:
        path = _require(base / folder / f"{split}{suffix}", f"the {name} {split} file")
        with h5py.File(path, "r") as handle:
            if "data" not in handle or "label" not in handle:
                raise InputFileError(f"`root`: {str(path)!r} lacks the `data`/`label` datasets, has {list(handle)}")
            labels = np.asarray(handle["label"]).reshape(-1)
        relative = path.relative_to(root).as_posix()
        samples += [Sample(f"{relative}#{i}", H5Item(path, "data", i), int(label), split) for i, label in enumerate(labels)]
    return samples


def read_nyu_depth_v2(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """NYU-Depth v2: ``nyu_depth_v2_labeled.mat`` (v7.3/HDF5: ``depths``, ``sceneTypes``) and ``splits.mat``.

    Scene types outside the 9 named classes map to the last class ('others'), as in Gupta et al.
    """
    h5py = require_module("h5py", "h5py", "NYU-Depth v2's MATLAB v7.3 file")
    loadmat = require_module("scipy.io", "scipy", "NYU-Depth v2's splits.mat").loadmat
    mat = _require(root / "nyu_depth_v2_labeled.mat", "nyu_depth_v2_labeled.mat")
    with h5py.File(mat, "r") as handle:
        if "depths" not in handle or "sceneTypes" not in handle:
            raise InputFileError(f"`root`: {str(mat)!r} lacks `depths`/`sceneTypes`, has {list(handle)}")
        scenes = ["".join(chr(c) for c in np.asarray(handle[ref]).reshape(-1)) for ref in np.asarray(handle["sceneTypes"]).reshape(-1)]
    splits = loadmat(_require(root / "splits.mat", "splits.mat"))
    split_of = {int(i) - 1: "train" for i in np.asarray(splits["trainNdxs"]).reshape(-1)}
    split_of.update({int(i) - 1: "test" for i in np.asarray(splits["testNdxs"]).reshape(-1)})
    other = len(class_list.labels) - 1
    samples = []
    for index, scene in enumerate(scenes):
        label = class_list.labels.index(scene) if scene in class_list.labels[:other] else other
        if index in split_of:
            samples.append(Sample(f"nyu_depth_v2_labeled.mat#{index}", H5Item(mat, "depths", index, transpose=True),
                                  label, split_of[index]))
    return samples


def _sunrgbd_split(root: Path) -> dict[str, str]:
    """``allsplit.mat`` -> {path below 'SUNRGBD/': 'train' | 'test'}."""
    loadmat = require_module("scipy.io", "scipy", "SUN RGB-D's allsplit.mat").loadmat
    mat = _require(root / "SUNRGBDtoolbox" / "traintestSUNRGBD" / "allsplit.mat", "SUNRGBDtoolbox's allsplit.mat")
    data = loadmat(mat)
    out = {}
    for key, split in (("alltrain", "train"), ("alltest", "test")):
        for entry in np.asarray(data[key]).reshape(-1):
            text = str(np.asarray(entry).reshape(-1)[0]).rstrip("/")
            out[text.split("SUNRGBD/", 1)[-1]] = split
    return out


def read_sunrgbd(root: Path, protocol: EvalProtocol, class_list: ClassList, variant: str | None) -> list[Sample]:
    """SUN RGB-D: every ``scene.txt`` under ``SUNRGBD/`` with its ``depth/*.png`` and ``intrinsics.txt``.

    Scenes outside the class list are left out (the 19-class benchmark). The camera per image:
    focal length fx from ``intrinsics.txt``, baseline of the ``realsense`` preset for RealSense
    folders and of ``kinect`` otherwise (Kinect v1/v2, Xtion), as Omnivore does.
    """
    data = _require(root / "SUNRGBD", "the SUNRGBD folder")
    split_of = _sunrgbd_split(root)
    samples = []
    for scene_file in sorted(data.rglob("scene.txt")):
        folder = scene_file.parent
        relative = folder.relative_to(data).as_posix()
        scene = scene_file.read_text(encoding="utf-8").strip()
        if scene not in class_list.labels or relative not in split_of:
            continue
        depths = sorted((folder / "depth").glob("*.png"))
        if not depths:
            raise InputFileError(f"`root`: {str(folder)!r} has scene.txt but no depth/*.png")
        try:
            focal = float((folder / "intrinsics.txt").read_text().split()[0])
        except (OSError, ValueError, IndexError) as error:
            raise InputFileError(f"`root`: cannot read fx from {str(folder / 'intrinsics.txt')!r} ({error})") from None
        camera = "realsense" if relative.split("/")[0] == "realsense" else "kinect"
        samples.append(Sample(relative, depths[0], class_list.labels.index(scene), split_of[relative],
                              (("camera", camera), ("focal_length", focal))))
    return samples


def read_imagefolder(root: Path, class_names: list[str], split: str) -> list[Sample]:
    """``ROOT[/<split>]/<class>/<file>`` -> samples; classes are the sorted folder names."""
    base = root if split == "all" else _require(root / split, f"the split folder {split!r}")
    samples = []
    for label, name in enumerate(class_names):
        for path in sorted(p for p in (base / name).iterdir() if p.is_file() and not p.name.startswith(".")):
            samples.append(Sample(path.relative_to(root).as_posix(), path, label, split))
    return samples


def imagefolder_classes(root: Path, split: str) -> list[str]:
    """The class folder names of an ImageFolder layout, sorted."""
    base = root if split == "all" else _require(root / split, f"the split folder {split!r}")
    names = sorted(p.name for p in _require(base, "the ImageFolder root").iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise InputFileError(f"`root`: an ImageFolder needs at least 2 class folders in {str(base)!r}, got {names}")
    return names


def _find_audio(folders: list[Path], stems: list[str]) -> Path | None:
    for folder in folders:
        for stem in stems:
            for extension in AUDIO_EXTENSIONS:
                path = folder / f"{stem}{extension}"
                if path.is_file():
                    return path
    return None


def read_audiocaps(root: Path, split: str) -> RetrievalSet:
    """AudioCaps ``<split>.csv`` (audiocap_id, youtube_id, start_time, caption); the audio you downloaded
    in ``ROOT/<split>/``, ``ROOT/audio/<split>/`` or ``ROOT/audio/``, named ``<youtube_id>``,
    ``Y<youtube_id>`` or ``<audiocap_id>`` (.wav/.flac/.mp3/.ogg). Captions of one YouTube clip form one clip."""
    path = root / f"{split}.csv"
    if not path.exists() and (root / "dataset" / f"{split}.csv").exists():
        path = root / "dataset" / f"{split}.csv"
    rows = _read_csv(path, ("audiocap_id", "youtube_id", "start_time", "caption"))
    folders = [root / split, root / "audio" / split, root / "audio", root]
    clips: list[Sample] = []
    index_of: dict[str, int] = {}
    captions, caption_clip, missing = [], [], []
    for row in rows:
        key = row["youtube_id"]
        if key not in index_of:
            audio = _find_audio(folders, [key, f"Y{key}", row["audiocap_id"]])
            if audio is None:
                index_of[key] = -1
                missing.append(key)
            else:
                index_of[key] = len(clips)
                clips.append(Sample(audio.relative_to(root).as_posix(), audio, len(clips), split))
        if index_of[key] >= 0:
            captions.append(row["caption"])
            caption_clip.append(index_of[key])
    return RetrievalSet(clips, captions, caption_clip, missing)


def read_clotho(root: Path, split: str) -> RetrievalSet:
    """Clotho ``clotho_captions_<split>.csv`` (file_name, caption_1..caption_5) with audio in
    ``ROOT/<split>/`` (or ``ROOT/clotho_audio_<split>/``)."""
    columns = ("file_name",) + tuple(f"caption_{i}" for i in range(1, 6))
    rows = _read_csv(root / f"clotho_captions_{split}.csv", columns)
    folders = [root / split, root / f"clotho_audio_{split}", root / f"clotho_audio_{split}" / split]
    clips, captions, caption_clip, missing = [], [], [], []
    for row in rows:
        audio = next((f / row["file_name"] for f in folders if (f / row["file_name"]).is_file()), None)
        if audio is None:
            missing.append(row["file_name"])
            continue
        for column in columns[1:]:
            captions.append(row[column])
            caption_clip.append(len(clips))
        clips.append(Sample(audio.relative_to(root).as_posix(), audio, len(clips), split))
    return RetrievalSet(clips, captions, caption_clip, missing)


ClassificationAdapter = Callable[[Path, EvalProtocol, ClassList, "str | None"], list[Sample]]
ADAPTERS: dict[str, ClassificationAdapter] = {
    "esc50": read_esc50,
    "urbansound8k": read_urbansound8k,
    "modelnet40": read_modelnet40,
    "scanobjectnn": read_scanobjectnn,
    "nyu-depth-v2": read_nyu_depth_v2,
    "sunrgbd": read_sunrgbd,
}
RETRIEVAL_ADAPTERS: dict[str, Callable[[Path, str], RetrievalSet]] = {
    "audiocaps": read_audiocaps,
    "clotho": read_clotho,
}


def read_class_list(protocol: EvalProtocol) -> ClassList:
    """The protocol's shipped class list."""
    if protocol.class_list is None:
        raise ConfigError(f"evaluation dataset {protocol.name!r} has no `class_list`")
    return load_class_list(protocol.class_list)
