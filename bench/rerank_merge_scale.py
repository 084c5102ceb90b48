"""On which scale should a re-ranker's score be added to its first stage's? A probe, nothing trained.

The two-stage merge is final = first + rerank over each query's top K (`tvr.postproc.two_stage`),
with `first` the first stage's cosine and `rerank` the re-ranker's logit. This evaluates a finished
re-ranker with the cosine multiplied by w before the sum, for several w (1 = the paper's merge, which
a stand-alone re-ranker uses; the first stage's own logit scale = the scale it was trained at), on the
validation and test splits. It probes stand-alone re-rankers: a residual one (`model.residual`, the
default now) was trained with its own weight, `merge_weight`, and is merged with it:

    python bench/rerank_merge_scale.py --first-stage runs/synth-bench-g4/seqTransf-video-init-e8 \
        --rerank runs/synth-bench-g4/crosstvr-seqTransf-video-init

Writes bench/results/rerank_merge_scale.json (merged by first-stage name). The test split is read
only to report; no choice is made on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from benchlib import split_pairs

from tvr.atomic import atomic_write_json

WEIGHTS = (1.0, 10.0, 30.0, 100.0)


def probe(first_dir: Path, rerank_dir: Path, data: Path, k: int) -> dict[str, object]:
    import torch

    from tvr.eval.evaluate import encode_clips, encode_texts, metrics_by_tag, score_matrix
    from tvr.eval.metrics import retrieval_metrics
    from tvr.models.registry import load_model, load_reranker
    from tvr.postproc.two_stage import PAIR_CHUNK, rerank_pairs_scorer, top_k_candidates, two_stage_scores

    model = load_model(first_dir, device="cpu").eval()
    reranker, _, _ = load_reranker(rerank_dir, device="cpu")
    scale = float(model.scale().detach())
    out: dict[str, object] = {"first_stage": first_dir.name, "rerank": rerank_dir.name, "k": k, "logit_scale": round(scale, 3)}
    for split in ("val", "test"):
        pairs = split_pairs(model, first_dir, data / f"{split}.jsonl")
        texts = [e.caption for e in pairs.entries]
        with torch.no_grad():
            t, v = encode_texts(model, texts, "cpu"), encode_clips(model, pairs.clips, "cpu")
            cos = score_matrix(model, t, v).astype(np.float64)
        gt = [int(r) for r in pairs.video_rows]
        # the re-ranker's scores of every candidate, computed once and reused for each w
        scorer = rerank_pairs_scorer(model, reranker, texts, pairs.clips, "cpu")
        cand = top_k_candidates(cos, k)
        q_rows, g_rows = np.repeat(np.arange(len(texts)), cand.shape[1]), cand.reshape(-1)
        second = np.concatenate([scorer(q_rows[i : i + PAIR_CHUNK], g_rows[i : i + PAIR_CHUNK])
                                 for i in range(0, len(q_rows), PAIR_CHUNK)])
        known = dict(zip(zip(q_rows.tolist(), g_rows.tolist(), strict=True), second.tolist(), strict=True))

        def rescore(q: np.ndarray, g: np.ndarray) -> np.ndarray:
            return np.array([known[pair] for pair in zip(q.tolist(), g.tolist(), strict=True)])

        row: dict[str, object] = {
            "first_stage_R@1": round(retrieval_metrics(cos, gt)["t2v"]["R@1"], 2),
            "std_in_top_k": {"first_cosine": round(float(np.take_along_axis(cos, cand, 1).std()), 4),
                             "rerank": round(float(second.std()), 4)},
        }
        for w in (*WEIGHTS, scale):
            final = two_stage_scores(cos * w, k, rescore)
            name = "logit_scale" if w == scale else f"w={w:g}"
            row[name] = {"R@1": round(retrieval_metrics(final, gt)["t2v"]["R@1"], 2)}
            if w == scale:
                row[name]["by_tag"] = {t: round(m["R@1"], 1) for t, m in metrics_by_tag(final, gt, pairs.entries).items()}
        out[split] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first-stage", type=Path, required=True)
    ap.add_argument("--rerank", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rerank_merge_scale.json")
    args = ap.parse_args()
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "rerank_merge_scale", "runs": {}}
    doc["runs"][args.first_stage.name] = probe(args.first_stage, args.rerank, args.data, args.k)
    atomic_write_json(args.out, doc)
    print(json.dumps(doc["runs"][args.first_stage.name], indent=1))


if __name__ == "__main__":
    main()
