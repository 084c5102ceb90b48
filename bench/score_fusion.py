"""Score-level fusion of finished runs of any method, on one synthetic world's test split.

`tvr ensemble` fuses inner-product runs only (meanP, seqTransf, MMT): it concatenates their vectors
so that an ANN index holds the ensemble. TS2-Net and ProST score a caption against a video with
more than one dot product, so they cannot join it. This bench asks whether they would be worth
the trouble: it sums the members' logits (λ_m · s_m, the rule `tvr ensemble` uses with equal
weights) on the test split's full score matrices and evaluates the sum overall and per tag.

    python bench/score_fusion.py \\
        --fusion six=meanP-video-init-e8+seqTransf-video-init-e8+seqTransf-video-init-e8-seed1+mmt-video-init-e8+... \\
        --fusion six+ts2net=...

A fusion of inner-product members only must equal the `tvr ensemble` run of the same members
(`bench/results/video_pretrain.json`); the script reports both when the ensemble run exists.
Score matrices are cached per run under RUNS_DIR/NAME/fusion-scores-test.npy (recomputed when the
run's weights are newer). Results are merged by
fusion name into bench/results/score_fusion.json (+ .md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import METRIC_KEYS, TAGS, markdown_rows, metric_cells, split_pairs, summarise, write_results

from tvr.atomic import atomic_write_json


def run_scores(run_dir: Path, manifest: Path) -> tuple[np.ndarray, float, list[int], list[Any], list[str]]:
    """The run's cosine-scale test score matrix, its logit scale, ground truth, entries and clip keys."""
    import torch

    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import WEIGHTS_FILE, load_model

    model = load_model(run_dir, device="cpu")
    scale = float(model.scale().detach())
    with split_pairs(model, run_dir, manifest) as pairs:
        cache = run_dir / f"fusion-scores-{manifest.stem}.npy"
        if cache.is_file() and cache.stat().st_mtime_ns >= (run_dir / WEIGHTS_FILE).stat().st_mtime_ns:  # not stale
            scores = np.load(cache)
        else:
            with torch.no_grad():
                t = encode_texts(model, [e.caption for e in pairs.entries], "cpu")
                v = encode_clips(model, pairs.clips, "cpu")
                scores = score_matrix(model, t, v).astype(np.float64)
            np.save(cache, scores)
        return scores, scale, [int(r) for r in pairs.video_rows], list(pairs.entries), list(pairs.clips.keys)


def fuse(members: list[Path], manifest: Path) -> dict[str, Any]:
    from tvr.eval.evaluate import metrics_by_tag
    from tvr.eval.report import report_of_final

    total, scales, ref = None, [], None
    for run_dir in members:
        scores, scale, gt, entries, keys = run_scores(run_dir, manifest)
        if ref is None:
            ref = (gt, entries, keys)
        elif (gt, keys) != (ref[0], ref[2]):
            raise SystemExit(f"{run_dir}: its test rows differ from {members[0]}'s")
        total = scale * scores if total is None else total + scale * scores
        scales.append(scale)
    fused = total / sum(scales)  # back on the cosine scale, as `tvr ensemble` keeps it
    gt, entries, _ = ref
    report = report_of_final(fused, fused, gt, postproc="none", querybank_bg=None, beta=20.0, k=None, temperature=1.0)
    report["by_tag"] = metrics_by_tag(fused, gt, entries)
    return summarise(report) | {"members": [m.name for m in members], "logit_scales": [round(s, 2) for s in scales]}


def markdown(doc: dict[str, Any]) -> str:
    head = ["fusion", "members", *METRIC_KEYS] + [f"R@1 {t}" for t in TAGS]
    rows = [[name, str(len(r["members"])), *metric_cells(r)] for name, r in doc["fusions"].items()]
    return "\n".join(markdown_rows(head, rows)) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fusion", action="append", default=[], help="NAME=RUN+RUN+… (finished runs in --runs-dir)")
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench-g4"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "score_fusion.json")
    args = ap.parse_args()
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"fusions": {}}
    doc.update({"benchmark": "score_fusion", "data": str(args.data)})
    for item in args.fusion:
        name, _, runs = item.partition("=")
        doc["fusions"][name] = fuse([args.runs_dir / r for r in runs.split("+")], args.data / "test.jsonl")
        atomic_write_json(args.out, doc)
    print(write_results(args.out, doc, markdown))


if __name__ == "__main__":
    main()
