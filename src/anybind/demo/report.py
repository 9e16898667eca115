"""The demo's outputs: a plain-text results table and a self-contained HTML report with pictures
(retrieved images, audio players, rendered point-cloud views, depth maps), media inlined as data URIs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anybind.atomic import atomic_write_bytes
from anybind.demo.evaluate import Evaluation


def results_table(evaluation: Evaluation) -> str:
    """The metrics as an aligned text table: trained, untrained ablation, chance."""
    rows = [("task", "trained", "untrained", "chance", "")]
    for metric in evaluation.metrics:
        rows.append((metric.task, f"{metric.value:.3f}",
                     "-" if metric.untrained is None else f"{metric.untrained:.3f}",
                     f"{metric.chance:.3f}", "emergent (never saw text)" if metric.emergent else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row[:4]))
             + ("  " + row[4] if row[4] else "") for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return _data_uri(buffer.getvalue(), "image/png")


def _media(path: str | Path, modality: str) -> str:
    """HTML showing one item of `modality` stored at `path`."""
    path = Path(path)
    if modality == "image":
        return f'<img src="{_png(np.asarray(Image.open(path).convert("RGB")))}" width="96" height="96">'
    if modality == "audio":
        return f'<audio controls src="{_data_uri(path.read_bytes(), "audio/wav")}"></audio>'
    if modality == "depth":
        depth = np.asarray(Image.open(path)).astype(np.float32)
        valid = depth > 0
        shown = np.zeros(depth.shape, np.uint8)
        if valid.any():
            near, far = depth[valid].min(), depth[valid].max()
            shown[valid] = (255 * (1 - (depth[valid] - near) / max(far - near, 1e-6)) * 0.8 + 40).astype(np.uint8)
        return f'<img src="{_png(shown)}" width="96" height="96" title="depth (near = bright)">'
    if modality == "pointcloud":
        from anybind.modalities.pointcloud.projection import project_to_views

        views = project_to_views(np.load(path)[None], method="realistic", views=[0, 2, 8]).numpy()[0]
        strip = np.concatenate([(255 * np.clip(v[0], 0, 1)).astype(np.uint8) for v in views], axis=1)
        return f'<img src="{_png(strip)}" height="96" title="rendered depth views">'
    return html.escape(str(path))


def write_report(evaluation: Evaluation, path: str | Path, title: str = "anybind demo", extra_html: str = "") -> Path:
    """Write the HTML report atomically to `path` and return it; `extra_html` (e.g. the real section)
    goes at the end of the page."""
    path = Path(path)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}.em{color:#075}.hit{display:inline-block;"
             "margin:4px;text-align:center;font-size:12px;vertical-align:top}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>Audio, point clouds and depth were bound to the anchor's <b>images only</b>; their "
             "links to text are emergent. <i>untrained</i> is the same model with those encoders left "
             "at their random init.</p><table><tr><th>task</th><th>trained</th><th>untrained</th>"
             "<th>chance</th><th></th></tr>"]
    for metric in evaluation.metrics:
        untrained = "-" if metric.untrained is None else f"{metric.untrained:.3f}"
        parts.append(f"<tr><td>{html.escape(metric.task)}</td><td><b>{metric.value:.3f}</b></td><td>{untrained}</td>"
                     f"<td>{metric.chance:.3f}</td><td class='em'>{'emergent' if metric.emergent else ''}</td></tr>")
    parts.append("</table>")
    timings = evaluation.info.get("timings")
    if timings:
        parts.append("<p>build times (s): " + ", ".join(f"{html.escape(k)} {v}" for k, v in timings.items()) + "</p>")
    parts.append("<h2>Any-to-any searches (test objects)</h2>")
    for search in evaluation.searches:
        query = (f"“{html.escape(search['query'])}”" if search["query_modality"] == "text"
                 else _media(search["query"], search["query_modality"]) +
                 f"<br><small>{html.escape(search.get('query_caption', ''))}</small>")
        parts.append(f"<h3>{search['query_modality']} → {search['target']}</h3><div class='hit'>{query}</div> ⟶ ")
        for hit in search["hits"]:
            parts.append(f"<div class='hit'>{_media(hit.metadata['path'], search['target'])}<br>"
                         f"{html.escape(hit.metadata.get('caption', ''))}<br>{hit.score:.3f}</div>")
    parts.append("<h2>What the modalities look like</h2>")
    for record in evaluation.test_records[:4]:
        parts.append("<div>" + " ".join(f"<div class='hit'>{_media(record[m], m)}<br>{m}</div>"
                                        for m in ("image", "depth", "pointcloud", "audio")) +
                     f"<div class='hit'><br>{html.escape(record['caption'])}</div></div>")
    if extra_html:
        parts.append(extra_html)
    parts.append("</body></html>")
    return atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))


def evaluation_to_json(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation as JSON-ready data (for ``anybind demo --json``)."""
    return {"metrics": [vars(m) for m in evaluation.metrics],
            "searches": [{**{k: v for k, v in s.items() if k != "hits"},
                          "hits": [{"id": h.id, "score": h.score, **h.metadata} for h in s["hits"]]}
                         for s in evaluation.searches],
            "timings": evaluation.info.get("timings", {})}
