"""Does a model read shapes, colours and which belongs to which? Each test caption against its foils.

For every caption of a split, the probe makes foils with `tvr.train.text_foils`: one colour word
changed, one shape word changed, two colour words swapped between objects, two shape words swapped,
two size words swapped (a caption without the words for one kind gets none of that kind). It counts
how often the caption's own video scores the caption above the foil (chance 50 %). A model that
reads a contrast rejects its foils; one that matches captions as bags of words rejects replacements
but not swaps.

For models that score by inner product it also says which side is blind: `query_shift` is how far a
foil moves the caption's query vector (mean 1 − cosine), beside `paraphrase_shift`, how far apart
two captions of the same video are. A swap that moves the query much less than a paraphrase does
cannot be told apart whatever the video side carries.

    python bench/foil_probe.py --run meanP-v2 --run mmt-v2 --split test --split train   # finished runs

Writes bench/results/foil_probe.json (merged by run name and split) and prints a table. Nothing is
trained; the test split is read only to evaluate, as synthetic_methods.py does.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import finished_runs_parser, read_results, split_pairs

from tvr.atomic import atomic_write_json

KINDS: dict[str, tuple[str, str]] = {  # name -> (operation, class)
    "colour changed": ("replace", "colour"),
    "shape changed": ("replace", "shape"),
    "colours swapped": ("swap", "colour"),
    "shapes swapped": ("swap", "shape"),
    "sizes swapped": ("swap", "size"),
}


def make_foil(kind: str) -> Callable[[str], str | None]:
    from tvr.train.text_foils import replaced, swapped

    operation, cls = KINDS[kind]
    op = replaced if operation == "replace" else swapped

    def one(caption: str) -> str | None:  # the same foil on every run: drawn from a hash of caption and kind
        return op(caption, cls, random.Random(zlib.crc32(f"{kind}|{caption}".encode())))

    return one


def probe(run_dir: Path, manifest: Path, device: str) -> dict[str, Any]:
    import torch

    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model

    model = load_model(run_dir, device=device)
    pairs = split_pairs(model, run_dir, manifest)
    captions = [e.caption for e in pairs.entries]
    rows = pairs.video_rows
    with torch.no_grad():
        video = encode_clips(model, pairs.clips, device)
        text = encode_texts(model, captions, device)
        own = score_matrix(model, text, video)[np.arange(len(captions)), rows]
        query = unit_queries(model, text)
        out: dict[str, Any] = {}
        if query is not None:
            a, b = paraphrases(rows)
            out["paraphrase_shift"] = shift(query[a], query[b])
        for kind in KINDS:
            foil = make_foil(kind)
            made = [(i, f) for i, c in enumerate(captions) if (f := foil(c)) is not None]
            if not made:
                out[kind] = {"captions": 0, "own_above_foil": None}
                continue
            idx = np.array([i for i, _ in made])
            foils = encode_texts(model, [f for _, f in made], device)
            scores = score_matrix(model, foils, video)[np.arange(len(made)), rows[idx]]
            out[kind] = {"captions": len(made), "own_above_foil": round(100.0 * float(np.mean(own[idx] > scores)), 1),
                         "ties": round(100.0 * float(np.mean(own[idx] == scores)), 1)}
            if query is not None:
                out[kind]["query_shift"] = shift(query[idx], unit_queries(model, foils))
    return out


def unit_queries(model: Any, text: Any) -> Any:
    """L2-normalised query vectors [N, D], or None for a model that does not score by inner product."""
    import torch

    return torch.nn.functional.normalize(model.query_vectors(text).float(), dim=-1) if model.inner_product else None


def paraphrases(rows: np.ndarray) -> tuple[list[int], list[int]]:
    """(first caption, other caption) index pairs of every video with several captions."""
    first: dict[int, int] = {}  # video row → its first caption
    pairs = [(first.setdefault(int(r), i), i) for i, r in enumerate(rows)]
    return [a for a, b in pairs if a != b], [b for a, b in pairs if a != b]


def shift(query: Any, other: Any) -> float:
    """Mean 1 − cosine between matching unit rows of `query` and `other`."""
    return round(float((1.0 - (query * other).sum(-1)).mean()), 4)


def main() -> None:
    ap = finished_runs_parser(__doc__, "foil_probe")
    ap.add_argument("--split", action="append", choices=("train", "val", "test"), help="default: test")
    args = ap.parse_args()

    doc = read_results(args.out, "foil_probe")
    for name in args.run:
        for split in args.split or ["test"]:
            doc["runs"].setdefault(name, {})[split] = probe(args.runs_dir / name, args.data / f"{split}.jsonl", args.device)
            atomic_write_json(args.out, doc)
    print("| run | split | " + " | ".join(KINDS) + " |")
    print("|---|---|" + "---|" * len(KINDS))
    for name, splits in doc["runs"].items():
        for split, r in splits.items():
            print(f"| {name} | {split} | " + " | ".join(str(r[k]["own_above_foil"]) for k in KINDS) + " |")
    shifted = [(name, split, r) for name, splits in doc["runs"].items() for split, r in splits.items() if "paraphrase_shift" in r]
    if shifted:
        print("\nquery shift (mean 1 − cosine of the query vectors): a paraphrase, then each foil")
        print("| run | split | paraphrase | " + " | ".join(KINDS) + " |")
        print("|---|---|---|" + "---|" * len(KINDS))
        for name, split, r in shifted:
            print(f"| {name} | {split} | {r['paraphrase_shift']} | " + " | ".join(str(r[k].get("query_shift")) for k in KINDS) + " |")


if __name__ == "__main__":
    main()
