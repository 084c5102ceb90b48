"""What the only English model here (all-MiniLM-L6-v2) knows of the benchmark's words and word order.

Two measurements, written as JSON (default `bench/results/text_prior.json`):

1. **Synonyms.** The paraphrase twin (`tvr.synth.paraphrase.SYNONYMS`) renames every colour, shape,
   motion and sound. For each renamed word, is MiniLM's nearest training word the one it stands for?
   ("a crimson circle" against "a red circle", "a green circle", …; the other parts of the phrase are
   the same.) Measured on MiniLM's static word vectors (what the synthetic backbone's text tower
   starts from) and on its sentence vectors (mean of the contextual states). Chance is 1 / (words in
   the set). This bounds any text side built from MiniLM on the paraphrase test.
2. **Word order.** On a world's test split, for every caption of a group's base video: is another
   caption of the same video closer than each caption of the order-swapped video? The two videos
   hold the same objects, so only the order of the events tells them apart (chance 50 %). Measured
   for MiniLM's sentence vector and for the pooled text embedding of every `--run` directory.
3. **Paraphrase retrieval with a perfect video side.** For every caption of the world's paraphrase
   twin, where does its own original caption rank among all the test captions by MiniLM's sentence
   vector, and where does its video rank when every test video is represented by its own test
   captions (scored by the closest of them)? No model's video side can describe a video better than
   its own captions, so this says what MiniLM's English alone is worth on the paraphrase test.

Run entries of an earlier result file are kept (merged by run name).

    python bench/text_prior.py --world runs/synth-bench-g4/world \
        --run runs/synth-bench-g4/seqTransf --run runs/synth-bench-g4/seqTransf-ctx-order
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from tvr.atomic import atomic_write_json
from tvr.encoders.minilm import load_minilm

# (training words, their paraphrase-twin names, the phrase they are tried in)
SYNONYM_SETS = {
    "colour": (("red", "green", "blue", "yellow", "purple", "cyan"),
               ("crimson", "emerald", "azure", "golden", "lilac", "aqua"), "a {} circle"),
    "shape": (("circle", "square", "triangle", "cross"), ("sphere", "block", "wedge", "x mark"), "a red {}"),
    "motion": (("moves left", "moves right", "moves up", "moves down", "stays still"),
               ("glides westward", "glides eastward", "ascends", "descends", "is motionless"), "a red circle {}"),
    "sound": (("with beeping", "with a low hum", "in silence"), ("with chirping", "with a low buzz", "in a hush"),
              "a red circle moves left {}"),
}


@functools.cache
def _minilm():
    return load_minilm()  # once per run: every measurement reads the same frozen model


def minilm_vectors(texts: list[str], static: bool) -> torch.Tensor:
    """Unit vectors: the mean of MiniLM's static word vectors (no [CLS]/[SEP]) or its sentence vector."""
    model, tok = _minilm()
    ids, mask = tok(texts, 64)
    with torch.no_grad():
        if not static:
            return F.normalize(model(ids, mask)[1], dim=-1)
        words = mask.clone()
        words[:, 0] = False  # [CLS]
        words[torch.arange(len(texts)), mask.sum(dim=1) - 1] = False  # [SEP]
        vec = model.bert.embeddings.word_embeddings(ids)
        w = words.float().unsqueeze(-1)
        return F.normalize((vec * w).sum(1) / w.sum(1), dim=-1)


def synonym_accuracy() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, (train, twin, phrase) in SYNONYM_SETS.items():
        row = {"words": len(train), "chance": 1 / len(train)}
        for kind in ("static", "sentence"):
            a = minilm_vectors([phrase.format(w) for w in train], static=kind == "static")
            b = minilm_vectors([phrase.format(w) for w in twin], static=kind == "static")
            row[kind] = float((b @ a.T).argmax(dim=1).eq(torch.arange(len(twin))).float().mean())
        out[name] = row
    return out


def order_pairs(world: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(test captions, triples (caption, same-video caption, order-twin caption))."""
    rows = [json.loads(line) for line in (world / "test.jsonl").read_text(encoding="utf-8").splitlines() if line]
    by_group: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(rows):
        for tag in ("base", "order"):
            if tag in r.get("tags", []):
                by_group[r.get("group", "")][tag].append(i)
    triples = [(x, y, z) for g in by_group.values() for x in g["base"] for y in g["base"] if x != y for z in g["order"]]
    return [r["caption"] for r in rows], triples


def order_accuracy(vectors: torch.Tensor, triples: list[tuple[int, int, int]]) -> float:
    v = F.normalize(vectors.float(), dim=-1)
    x, y, z = (torch.tensor(c) for c in zip(*triples))
    return float(((v[x] * v[y]).sum(-1) > (v[x] * v[z]).sum(-1)).float().mean())


def paraphrase_retrieval(world: Path) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in (world / "test.jsonl").read_text(encoding="utf-8").splitlines() if line]
    twin = [json.loads(line) for line in (world / "test_paraphrase.jsonl").read_text(encoding="utf-8").splitlines() if line]
    original = [r["caption"] for r in rows]
    target = torch.tensor([original.index(t["paraphrase_of"]) for t in twin])
    sims = minilm_vectors([t["caption"] for t in twin], static=False) @ minilm_vectors(original, static=False).T
    videos = sorted({r["video"] for r in rows})
    of_video = torch.tensor([videos.index(r["video"]) for r in rows])
    by_video = torch.stack([sims[:, of_video == v].max(dim=1).values for v in range(len(videos))], dim=1)
    return {"captions": {"gallery": len(original), **_recall(sims, target)},
            "videos by their own captions": {"gallery": len(videos), **_recall(by_video, of_video[target])}}


def _recall(sims: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """R@1 / R@10 and median rank by tvr's own metrics (ties take their average position)."""
    from tvr.eval.metrics import ranks, recall_summary

    summary = recall_summary(ranks(sims.numpy(), target.tolist()))
    return {"R@1": summary["R@1"], "R@10": summary["R@10"], "median rank": summary["MdR"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--run", type=Path, action="append", default=[], help="a trained run directory (repeatable)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "text_prior.json")
    args = ap.parse_args()
    t0 = time.time()
    doc: dict = {"synonyms": synonym_accuracy()}
    captions, triples = order_pairs(args.world)
    doc["order"] = {"world": str(args.world), "triples": len(triples), "chance": 0.5,
                    "minilm sentence vector": order_accuracy(minilm_vectors(captions, static=False), triples)}
    if args.run:
        from tvr.models import TextBatch
        from tvr.models.registry import load_model

        for run in args.run:
            model = load_model(run).eval()
            with torch.no_grad():
                pooled = torch.cat([model.encode_text(TextBatch(captions[i : i + 256])).pooled
                                    for i in range(0, len(captions), 256)])
            doc["order"][f"run {run.name}"] = order_accuracy(pooled, triples)
    doc["paraphrase"] = {"world": str(args.world), **paraphrase_retrieval(args.world)}
    if args.out.is_file():  # keep the runs measured before
        doc["order"] = {**json.loads(args.out.read_text(encoding="utf-8")).get("order", {}), **doc["order"]}
    doc["wall_s"] = round(time.time() - t0, 1)
    atomic_write_json(args.out, doc)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
