"""``anybind info``: registered modalities, encoders and anchors, the presets shipped, and with
``--model`` the model's modalities and the license of each weights file it uses."""

from __future__ import annotations

import argparse
from typing import Any

from anybind.cli import add_common_options, print_json
from anybind.config import DATA_SUFFIXES, config_dirs
from anybind.registry import get_anchor, list_anchors, list_encoders


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind info``."""
    add_common_options(parser, model=False)
    parser.add_argument("--model", default=None,
                        help="also load this preset, config file or bundle folder and show its weights licenses")


def run(args: argparse.Namespace) -> int:
    """Print the registry contents."""
    presets = sorted({p.stem for root in config_dirs() for p in (root / "presets").glob("*") if p.suffix in DATA_SUFFIXES})
    anchor_licenses = {name: get_anchor(name).weights_license for name in list_anchors()}
    data: dict[str, Any] = {"modalities": list_encoders(), "anchors": list_anchors(), "presets": presets,
                            "anchor_weights_licenses": {k: v for k, v in anchor_licenses.items() if v}}
    if args.model is not None:
        from anybind.model import load

        model = load(args.model, device=args.device or "cpu")
        data["model"] = {"anchor": model.anchor_key, "modalities": model.modalities,
                         "licenses": model.weights_licenses()}
    if args.json:
        print_json(data)
        return 0
    print("modalities (encoders):")
    for modality, encoders in data["modalities"].items():  # type: ignore[union-attr]
        print(f"  {modality:<12} {', '.join(encoders)}")
    print("anchors: " + ", ".join(f"{name} (weights: {anchor_licenses[name]})" if anchor_licenses[name] else name
                                  for name in data["anchors"]))
    print(f"presets: {', '.join(presets)}")
    if "model" in data:
        print(f"model: anchor {data['model']['anchor']}, modalities {', '.join(data['model']['modalities'])}")
        print("weights licenses:" if data["model"]["licenses"] else "weights licenses: none recorded (random init)")
        for row in data["model"]["licenses"]:
            commercial = "" if row.get("commercial_use", True) else ", non-commercial"
            print(f"  {row['file']}: {row['license']}{commercial}")
    return 0
