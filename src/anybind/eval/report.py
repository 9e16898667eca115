"""Evaluation reports: a markdown table, and the published numbers of ``configs/eval/published.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybind.config import configs_dir, from_dict, read_data_file

if TYPE_CHECKING:
    from anybind.model import BoundModel


@dataclass(frozen=True)
class PublishedNumber:
    """One number read in a paper or a repository, with where it was read."""

    model: str  # weights file name (or preset name) the number belongs to
    dataset: str  # evaluation dataset name
    split: str  # the split it was measured on ("all": every fold)
    metric: str  # metric name as in our reports (e.g. "top1")
    value: float  # in [0, 1]
    source: str  # where the number was read


def load_published() -> list[PublishedNumber]:
    """Every entry of ``configs/eval/published.yaml``."""
    path = configs_dir() / "eval" / "published.yaml"
    data = read_data_file(path)
    return [from_dict(PublishedNumber, entry, f"{path}: entries[{i}]") for i, entry in enumerate(data.get("entries", []))]


def model_names(model: BoundModel) -> set[str]:
    """Names a model is known by: its preset/bundle name and the file names of every weights file
    (encoders and anchor) in its config."""
    names = {model.config.name} if model.config.name else set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value:
            names.add(Path(value).name)

    visit(model.config.anchor)
    visit(model.config.modalities)
    return names


def published_for(model: BoundModel, dataset: str, split: str, compare: bool | str) -> list[dict[str, Any]]:
    """The published numbers of `dataset` for `model` (by its names) or for the model named `compare`;
    each with ``same_split`` telling whether it was measured on the reported `split`."""
    wanted = {compare} if isinstance(compare, str) else model_names(model)
    return [{**vars(entry), "same_split": entry.split == split} for entry in load_published()
            if entry.dataset == dataset and entry.model in wanted]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def to_markdown(report: dict[str, Any]) -> str:
    """A markdown summary of an `evaluate` report: protocol lines, then one table row per metric
    (value and 95% interval in percent, and the published number when it was compared)."""
    protocol = report["protocol"]
    published = report.get("published", [])
    lines = [f"### {report['title']} — {report['model']} ({report['modality']}, {report['task']})", ""]
    facts = [f"split `{protocol['split']}`" + (f", variant `{protocol['variant']}`" if protocol.get("variant") else "")]
    if "items" in protocol:
        facts.append(f"{protocol['items']} items, {protocol['classes']} classes ({protocol['class_names_from']})")
        facts.append(f"templates ({protocol['template_set']}): " + " | ".join(f"`{t}`" for t in protocol["templates"]))
    else:
        facts.append(f"{protocol['clips']} clips, {protocol['captions']} captions, {protocol['missing_clips']} "
                     "listed clips missing")
    facts.append(f"encoder `{protocol['encoder']}`; tuned: "
                 + (f"yes, on `{protocol['tuned_on']}` (never on the reported split)" if protocol["tuned"] else "no"))
    facts.append(f"protocol: {protocol['reference']}")
    lines += [f"- {fact}" for fact in facts] + [""]
    header = "| metric | ours (%) | 95% CI | n |" + (" published (%) | source |" if published else "")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for metric in report["metrics"]:
        low, high = metric["ci95"]
        row = f"| {metric['name']} | {_percent(metric['value'])} | {_percent(low)}–{_percent(high)} | {metric['n']} |"
        if published:
            match = [p for p in published if p["metric"] == metric["name"]]
            row += (" " + "; ".join(f"{_percent(p['value'])} ({p['model']}, split {p['split']}"
                                    + ("" if p["same_split"] else ", not the split reported here") + ")" for p in match)
                    + " | " + "; ".join(p["source"] for p in match) + " |") if match else " | |"
        lines.append(row)
        for name, value in metric.get("per_split", {}).items():
            lines.append(f"| {metric['name']} {name} | {_percent(value)} | | |" + (" | |" if published else ""))
    if report.get("published") == []:
        lines += ["", "No published number for this model and dataset in configs/eval/published.yaml."]
    return "\n".join(lines) + "\n"
