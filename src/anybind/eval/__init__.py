"""``anybind.eval``: the published benchmark protocols on the published file layouts.

    report = anybind.eval.evaluate("esc50", "data/ESC-50-master", model, compare=True)
    print(anybind.eval.to_markdown(report))

Datasets (``configs/eval/datasets/``): ESC-50, UrbanSound8K, ModelNet40, ScanObjectNN,
NYU-Depth v2 (10 scenes), SUN RGB-D depth (19 scenes), AudioCaps, Clotho, ImageFolder.
"""

from __future__ import annotations

from anybind.config import config_dirs
from anybind.eval.benchmark import evaluate as evaluate
from anybind.eval.datasets import EvalProtocol as EvalProtocol
from anybind.eval.datasets import load_protocol as load_protocol
from anybind.eval.metrics import bootstrap_interval as bootstrap_interval
from anybind.eval.metrics import first_relevant_rank as first_relevant_rank
from anybind.eval.metrics import retrieval_metrics as retrieval_metrics
from anybind.eval.metrics import top1_correct as top1_correct
from anybind.eval.report import to_markdown as to_markdown


def list_datasets() -> list[str]:
    """Names of the evaluation datasets shipped in ``configs/eval/datasets/``."""
    return sorted({path.stem for root in config_dirs() for path in (root / "eval" / "datasets").glob("*.yaml")})
