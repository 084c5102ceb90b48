"""Does a model read shapes, colours and which belongs to which? Each test caption against its foils.

For every caption of a split, the probe makes foils with `tvr.train.text_foils`: one colour word
changed, one shape word changed, two colour words swapped between objects, two shape words swapped,
two size words swapped (a caption without the words for one kind gets none of that kind). It counts
how often the caption's own video scores the caption above the foil (chance 50 %). A model that
reads a contrast rejects its foils; one that matches captions as bags of words rejects replacements
but not swaps.

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
        own = score_matrix(model, encode_texts(model, captions, device), video)[np.arange(len(captions)), rows]
        out: dict[str, Any] = {}
        for kind in KINDS:
            foil = make_foil(kind)
            made = [(i, f) for i, c in enumerate(captions) if (f := foil(c)) is not None]
            if not made:
                out[kind] = {"captions": 0, "own_above_foil": None}
                continue
            idx = np.array([i for i, _ in made])
            scores = score_matrix(model, encode_texts(model, [f for _, f in made], device), video)[np.arange(len(made)), rows[idx]]
            out[kind] = {"captions": len(made), "own_above_foil": round(100.0 * float(np.mean(own[idx] > scores)), 1),
                         "ties": round(100.0 * float(np.mean(own[idx] == scores)), 1)}
    return out


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


if __name__ == "__main__":
    main()
