"""Why QB-Norm IS with the training captions as querybank lowers R@1 on the synthetic benchmark.

IS ranks the gallery by β·s(q, v) − log Z(v), with Z(v) = Σ_b exp(β·s(b, v)) over the querybank's
captions b: a video that many bank queries find is pushed down. This scores each finished `--run`
once, then applies IS (`tvr.postproc.qbnorm.inverted_softmax`, β = `--beta`) with querybanks that
differ in what their captions describe:

- `train`: the world's training captions (the issue's querybank, as in `synthetic_methods.py`);
- `train-sequence_beside`: only those of the test queries' composition;
- `fresh-train`, `fresh-test`: captions of a second world drawn with another seed (`--fresh-seed`;
  captions only, nothing rendered). Neither was seen in training; `fresh-test` has the test
  queries' composition (groups of four, a sound always named) but that world's own held-out pairs;
- `test-other-groups` (transductive, a diagnosis, not a fair number): the test captions of every
  other group of four, so no bank caption describes the video or its near-duplicates; and the same
  split into the groups with held-out (colour, shape) pairs and those without.

For each: t2v R@1 on the test split (ties ranked as `tvr eval` ranks them), on its held-out and other
queries, per tag, and the validation split's R@1 with the training bank (ordinary retrieval: no
near-duplicates). Written as JSON and Markdown (default `bench/results/qbnorm_bank.{json,md}`):

    python bench/qbnorm_bank.py --run mmt-objects-1200 --run mmt-objects-1200-seed3 --run seqTransf-soup-default --run meanP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import TAGS, finished_runs_parser, fmt, markdown_rows, split_pairs, write_results

BANK_ORDER = ("train", "train-sequence_beside", "fresh-train", "fresh-test",
              "test-other-groups", "test-other-groups-not-heldout", "test-other-groups-heldout")
TRANSDUCTIVE = frozenset({"test-other-groups", "test-other-groups-not-heldout", "test-other-groups-heldout"})


def fresh_captions(data: Path, seed: int) -> dict[str, list[str]]:
    """Training and test captions of a world shaped like the benchmark's in `data` (same split sizes), drawn with `seed`."""
    from tvr.synth.captions import captions_for
    from tvr.synth.world import WorldConfig, sample_world

    world_doc = json.loads((data / "world.json").read_text())
    counts = world_doc["videos"]
    n = sum(counts.values())
    world = sample_world(WorldConfig(videos=n, seed=seed, val_fraction=counts["val"] / n,
                                     test_fraction=counts["test"] / n, group_size=world_doc["group_size"]))
    return {split: [c for sc in world.scenes if sc.split == split for c in captions_for(sc)] for split in ("train", "test")}


def breakdown(scores_qg: np.ndarray, gt: np.ndarray, rows: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """t2v R@1 (%) over all queries and over each of `rows` (boolean masks), ties at their average rank like `tvr eval`."""
    from tvr.eval.metrics import ranks

    first = ranks(scores_qg, [int(g) for g in gt]) == 1
    return {"all": float(first.mean() * 100)} | {name: float(first[m].mean() * 100) for name, m in (rows or {}).items()}


def measure(run: Path, data: Path, fresh: dict[str, list[str]], beta: float) -> dict[str, Any]:
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model
    from tvr.postproc.qbnorm import inverted_softmax
    from tvr.postproc.querybank import QueryBank

    model = load_model(run).eval()
    train = read_manifest(data / "train.jsonl").entries
    test = split_pairs(model, run, data / "test.jsonl")
    val = split_pairs(model, run, data / "val.jsonl")

    def scores(texts: list[str], videos: torch.Tensor) -> np.ndarray:
        return score_matrix(model, encode_texts(model, texts, "cpu"), videos).astype(np.float64)

    with torch.no_grad():
        test_v, val_v = encode_clips(model, test.clips, "cpu"), encode_clips(model, val.clips, "cpu")
        s_test = scores([e.caption for e in test.entries], test_v)
        s_val = scores([e.caption for e in val.entries], val_v)
        train_texts = [e.caption for e in train]
        banks = {"train": scores(train_texts, test_v),
                 "fresh-train": scores(fresh["train"], test_v), "fresh-test": scores(fresh["test"], test_v)}
        kinds = np.array([e.extra.get("kind") for e in train])
        banks["train-sequence_beside"] = banks["train"][kinds == "sequence_beside"]
        val_bank = scores(train_texts, val_v)
    gt, gt_val = np.asarray(test.video_rows), np.asarray(val.video_rows)
    tags = [set(e.extra.get("tags", ())) for e in test.entries]
    heldout = np.array(["heldout" in t for t in tags])
    rows = {"heldout": heldout, "not heldout": ~heldout} | {t: np.array([t in s for s in tags]) for t in TAGS if t != "heldout"}

    # transductive banks: the test captions of the other groups, as rows of a bank×gallery matrix that is
    # set to -inf (exp → 0) where the bank caption belongs to the video's own group
    group = np.array([e.extra["group"] for e in test.entries])
    video_group = np.empty(s_test.shape[1], dtype=object)
    video_group[gt] = group
    own_group = group[:, None] == video_group[None, :]

    def is_scores(bank_bg: np.ndarray) -> np.ndarray:
        return inverted_softmax(QueryBank.from_scores(bank_bg, beta=beta), s_test)

    def masked_is(keep_rows: np.ndarray) -> np.ndarray:
        log_z = np.logaddexp.reduce(np.where(own_group | ~keep_rows[:, None], -np.inf, beta * s_test), axis=0)
        return beta * s_test - log_z

    results = {"raw": breakdown(s_test, gt, rows)}
    for name in ("train", "train-sequence_beside", "fresh-train", "fresh-test"):
        results[name] = breakdown(is_scores(banks[name]), gt, rows) | {"bank_size": len(banks[name])}
    everyone = np.ones(len(group), dtype=bool)
    for name, keep in (("test-other-groups", everyone), ("test-other-groups-not-heldout", ~heldout),
                       ("test-other-groups-heldout", heldout)):
        results[name] = breakdown(masked_is(keep), gt, rows) | {"bank_size": "the other groups' " + str(int(keep.sum()))}
    best = {name: round(float(banks[name].max(axis=0).mean()), 3) for name in ("train", "fresh-test")}
    best["test-other-groups"] = round(float(np.where(own_group, -np.inf, s_test).max(axis=0).mean()), 3)
    return {
        "method": model.method, "beta": beta, "test": results,
        "val": {"raw": breakdown(s_val, gt_val)["all"],
                "train": breakdown(inverted_softmax(QueryBank.from_scores(val_bank, beta=beta), s_val), gt_val)["all"]},
        "mean_best_bank_similarity_per_test_video": best,
    }


def markdown(doc: dict[str, Any]) -> str:
    cols = ["all", "heldout", "not heldout", *(t for t in TAGS if t != "heldout")]
    head = ["run", "querybank (IS, β = %g)" % doc["beta"], *("R@1 " + c for c in cols)]
    rows = []
    for run, r in doc["runs"].items():
        for bank in ("raw", *BANK_ORDER):
            label = "none (raw)" if bank == "raw" else bank + (" (transductive)" if bank in TRANSDUCTIVE else "")
            rows.append([run, label, *(fmt(r["test"][bank][c]) for c in cols)])
    val_head = ["run", "val R@1 raw", "val R@1 IS (train)"]
    val_rows = [[run, fmt(r["val"]["raw"]), fmt(r["val"]["train"])] for run, r in doc["runs"].items()]
    return "\n".join(markdown_rows(head, rows) + ["", "Validation split (no near-duplicates), training captions as querybank:", ""]
                     + markdown_rows(val_head, val_rows)) + "\n"


def main() -> None:
    ap = finished_runs_parser(__doc__, "qbnorm_bank")
    ap.add_argument("--beta", type=float, default=20.0, help="IS inverse temperature (default: tvr's, 20)")
    ap.add_argument("--fresh-seed", type=int, default=7, help="seed of the second world whose captions form the fresh banks")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    fresh = fresh_captions(args.data, args.fresh_seed)
    doc: dict[str, Any] = {"benchmark": "qbnorm_bank", "world": str(args.data), "beta": args.beta,
                           "fresh_seed": args.fresh_seed, "metric": "t2v R@1 (%)", "runs": {}}
    for name in args.run:
        doc["runs"][name] = measure(args.runs_dir / name, args.data, fresh, args.beta)
        print(name, json.dumps(doc["runs"][name]["test"]["train"]), flush=True)
    doc["wall_s"] = round(time.time() - t0, 1)
    print(write_results(args.out, doc, markdown))


if __name__ == "__main__":
    main()
