"""QB-Norm's inverse temperature β on the synthetic benchmark: does any β put IS / DIS above raw?

For every trained `--run` directory, the test split is scored once; the querybank is the world's
training captions (as in `bench/synthetic_methods.py`). Then t2v R@1 is computed raw and after
inverted softmax (IS) and dynamic inverted softmax (DIS, k = 1) for each β of `--betas`, with the
hubness of the raw and the β = 20 scores (skewness of N_10: how unevenly the videos appear in the
queries' top 10; 0 for a perfectly even gallery). Written as JSON (default
`bench/results/qbnorm_beta.json`):

    python bench/qbnorm_beta.py --world runs/synth-bench-g4/world \
        --run runs/synth-bench-g4/meanP-v2 --run runs/synth-bench-g4/seqTransf-v2 --run runs/synth-bench-g4/mmt-v2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import split_pairs

from tvr.atomic import atomic_write_json

DEFAULT_BETAS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0)


def r_at_1(scores_qg: np.ndarray, gt: list[int]) -> float:
    from tvr.eval.metrics import ranks

    return float(np.mean(ranks(scores_qg, gt) == 1) * 100)


def measure(run: Path, world: Path, betas: tuple[float, ...]) -> dict:
    from tvr.eval.hubness import hubness
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model
    from tvr.postproc.qbnorm import dynamic_inverted_softmax, inverted_softmax
    from tvr.postproc.querybank import QueryBank

    model = load_model(run).eval()
    pairs = split_pairs(model, run, world / "test.jsonl")
    bank = [e.caption for e in read_manifest(world / "train.jsonl").entries]
    with torch.no_grad():
        videos = encode_clips(model, pairs.clips, "cpu")
        scores = score_matrix(model, encode_texts(model, [e.caption for e in pairs.entries], "cpu"), videos)
        bank_scores = score_matrix(model, encode_texts(model, bank, "cpu"), videos)
    scores, bank_scores = scores.astype(np.float64), bank_scores.astype(np.float64)
    gt = [int(r) for r in pairs.video_rows]
    out = {"method": model.method, "logit_scale": round(float(model.scale().detach()), 3),
           "raw": r_at_1(scores, gt), "hubness_raw": hubness(scores), "is": {}, "dis": {}}
    for beta in betas:
        qb = QueryBank.from_scores(bank_scores, beta=beta)
        is_scores = inverted_softmax(qb, scores)
        out["is"][str(beta)] = r_at_1(is_scores, gt)
        out["dis"][str(beta)] = r_at_1(dynamic_inverted_softmax(qb, scores), gt)
        if beta == 20.0:
            out["hubness_is_20"] = hubness(is_scores)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--run", type=Path, action="append", required=True, help="a trained run directory")
    ap.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qbnorm_beta.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    doc = {"benchmark": "qbnorm_beta", "world": str(args.world), "querybank": "the world's training captions",
           "metric": "t2v R@1 on the test split", "runs": {}}
    for run in args.run:
        doc["runs"][run.name] = measure(run, args.world, tuple(args.betas))
        print(run.name, json.dumps(doc["runs"][run.name]), flush=True)
    doc["wall_s"] = round(time.time() - t0, 1)
    atomic_write_json(args.out, doc)


if __name__ == "__main__":
    main()
