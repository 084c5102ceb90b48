"""`tvr eval --report FILE.html`: one self-contained page a person would rather read than the JSON.

Everything is inline: the plots are SVG drawn by matplotlib, the thumbnails are JPEGs in data URIs
taken from the frames the evaluation already decoded, and there is no script and no external
asset, so the file opens offline and can be mailed. It shows the headline metrics, R@K curves in
both directions, per-tag bars, the hubness k-occurrence histogram before and after
post-processing, the 20 worst queries with the true video beside what was retrieved instead, and
the training curves when the checkpoint has a metrics.jsonl.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tvr.atomic import atomic_open

WORST = 20
HUBNESS_K = 10


def write_html_report(
    path: Path, report: dict[str, Any], raw_qg: np.ndarray, final_qg: np.ndarray, gt: Sequence[int], pairs: Any,
    run_dir: Path | None = None,
) -> None:
    """Write the page for one evaluation: `report` is `evaluate_model`'s JSON, `raw_qg`/`final_qg` the
    score matrices before and after post-processing, `pairs` the evaluated `PairSet`."""
    from tvr.eval.hubness import k_occurrence
    from tvr.eval.metrics import ranks, video_to_text_gt

    gt = [int(g) for g in gt]
    t2v = ranks(final_qg, gt)
    has, captions = video_to_text_gt(gt, final_qg.shape[0], final_qg.shape[1])
    v2t = ranks(final_qg.T[has], captions)
    k = min(HUBNESS_K, final_qg.shape[1])
    sections = [
        _summary(report),
        _figure("Recall at K", _recall_curves({"text → video": t2v, "video → text": v2t})),
    ]
    if report.get("by_tag"):
        sections.append(_figure("Text → video by tag", _tag_bars(report["by_tag"])))
    sections.append(_figure(
        f"Hubness: how often each video is in a query's top {k}",
        _hubness({"raw scores": k_occurrence(raw_qg, k), f"after {report.get('postproc', 'none')}": k_occurrence(final_qg, k)}
                 if report.get("postproc", "none") != "none" else {"raw scores": k_occurrence(raw_qg, k)}, k),
    ))
    sections.append(_worst_queries(t2v, final_qg, gt, pairs))
    history = _history(run_dir)
    if history:
        sections.append(_figure("Training", _training_curves(history)))
    title = f"tvr evaluation — {report.get('method', '')} {report.get('split') or ''}".strip()
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #1d2330; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }} td, th {{ border: 1px solid #d5d9e0; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f2f5; }} td.text {{ text-align: left; max-width: 420px; }}
figure {{ margin: 12px 0 28px; }} figure svg {{ max-width: 100%; height: auto; }}
img.thumb {{ width: 96px; height: 96px; object-fit: cover; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{''.join(sections)}
</body></html>
"""
    with atomic_open(Path(path), "w") as fh:
        fh.write(page)


# ------------------------------------------------------------------------------------ sections
def _summary(report: dict[str, Any]) -> str:
    rows = []
    for direction in ("t2v", "v2t"):
        m = report.get(direction)
        if not m:
            continue
        cells = "".join(f"<td>{m[key]:.1f}</td>" for key in ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR") if key in m)
        rows.append(f"<tr><th>{'text → video' if direction == 't2v' else 'video → text'}</th>{cells}</tr>")
    head = "".join(f"<th>{key}</th>" for key in ("R@1", "R@5", "R@10", "R@50", "MdR", "MnR"))
    n_q, n_g = report.get("n_queries", "?"), report.get("n_gallery", "?")
    chance = report.get("chance", {}).get("R@1")
    note = f"{n_q} captions, {n_g} videos, post-processing: {html.escape(str(report.get('postproc', 'none')))}"
    if chance is not None:
        note += f"; chance R@1 {chance:.2f} %"
    return f"<h2>Metrics</h2><p>{note}</p><table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _figure(title: str, svg: str) -> str:
    return f"<h2>{html.escape(title)}</h2><figure>{svg}</figure>"


def _worst_queries(t2v: np.ndarray, final_qg: np.ndarray, gt: list[int], pairs: Any) -> str:
    order = np.argsort(-t2v, kind="stable")[:WORST]
    rows = []
    for q in order:
        top = int(np.argmax(final_qg[q]))
        entry = pairs.entries[q]
        rows.append(
            f"<tr><td>{t2v[q]:.0f}</td><td class='text'>{html.escape(entry.caption)}</td>"
            f"<td>{_thumb(pairs.clips, gt[q])}<br>{html.escape(_name(pairs, gt[q]))}</td>"
            f"<td>{_thumb(pairs.clips, top)}<br>{html.escape(_name(pairs, top))}</td></tr>"
        )
    return (f"<h2>The {len(order)} worst text → video queries</h2><table><tr><th>rank</th><th>caption</th>"
            f"<th>its video</th><th>retrieved first instead</th></tr>{''.join(rows)}</table>")


def _name(pairs: Any, row: int) -> str:
    for e, r in zip(pairs.entries, pairs.video_rows, strict=True):
        if int(r) == row:
            return e.video_key
    return pairs.clips.keys[row]


def _thumb(clips: Any, row: int) -> str:
    from PIL import Image

    batch = clips.batch([row])
    if batch.frames is None:
        return ""
    real = int(batch.frame_mask[0].sum())
    frame = batch.frames[0, max(0, real // 2)].permute(1, 2, 0).numpy()  # the middle sampled frame
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=80)
    return f"<img class='thumb' alt='' src='data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _history(run_dir: Path | None) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- plots
def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small and searchable
    import matplotlib.pyplot as plt

    return plt


def _recall_curves(ranks_by_direction: dict[str, np.ndarray]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, r in ranks_by_direction.items():
        n = max(1, int(np.ceil(r.max())))
        ks = np.unique(np.round(np.geomspace(1, n, num=min(n, 60))).astype(int))
        ax.plot(ks, [100.0 * np.mean(r <= k) for k in ks], marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("R@K (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    return _svg(fig)


def _tag_bars(by_tag: dict[str, dict[str, float]]) -> str:
    plt = _plt()
    tags = list(by_tag)
    x = np.arange(len(tags))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(tags) + 2), 3.4))
    for i, key in enumerate(("R@1", "R@5")):
        ax.bar(x + (i - 0.5) * 0.38, [by_tag[t].get(key, 0.0) for t in tags], width=0.38, label=key)
    ax.set_xticks(x, [f"{t}\n(n={by_tag[t].get('n_queries', '?')})" for t in tags])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    return _svg(fig)


def _hubness(counts: dict[str, np.ndarray], k: int) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    top = max(int(c.max()) for c in counts.values())
    bins = np.arange(0, top + 2) - 0.5
    for label, c in counts.items():
        ax.hist(c, bins=bins, alpha=0.55, label=f"{label} (max {int(c.max())}, never retrieved {int((c == 0).sum())})")
    ax.set_xlabel(f"N_{k}: queries that have the video in their top {k}")
    ax.set_ylabel("videos")
    ax.legend()
    return _svg(fig)


def _training_curves(history: list[dict[str, Any]]) -> str:
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(epochs, [h.get("train_loss") for h in history], marker=".", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val = [h.get("val", {}).get("t2v", {}).get("R@1") for h in history]
    if any(v is not None for v in val):
        right = ax.twinx()
        right.plot(epochs, [np.nan if v is None else v for v in val], marker=".", color="C1", label="validation t2v R@1")
        right.set_ylabel("validation R@1 (%)")
        right.legend(loc="upper right")
    ax.legend(loc="upper left")
    return _svg(fig)
