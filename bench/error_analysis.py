"""Why do text→video queries miss? Each test caption whose video is not ranked first is classed by the
video that was: a near-duplicate of its own group, or another group's video that lacks a colour the
caption names, lacks a shape it names, or has every named colour and shape (then binding, size,
motion, order or sound decided it); overall and per tag of the test captions, with the tag of the
near-duplicate ranked first. The synthetic world's scene records say what each video holds.

    python bench/error_analysis.py --run meanP-v2 --run ensemble-3   # finished runs of synthetic_methods.py

Writes bench/results/error_analysis.json (merged by run name) and prints a table. Nothing is trained;
the test split is read only to evaluate, as synthetic_methods.py does.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchlib import finished_runs_parser, read_results, split_pairs

from tvr.atomic import atomic_write_json

CLASSES = ("right", "near-duplicate", "named colour missing", "named shape missing", "named colours and shapes present")


def named(caption: str) -> tuple[set[str], set[str]]:
    """(colours, shapes) a caption names, as the world's canonical values ('violet' → purple, 'ball' → circle)."""
    from tvr.synth.captions import COLOUR_WORDS, SHAPE_WORDS

    text = caption.lower()
    colours = {c for c, words in COLOUR_WORDS.items() if any(re.search(rf"\b{w}\b", text) for w in words)}
    shapes = {s for s, words in SHAPE_WORDS.items() if any(re.search(rf"\b{w}\b", text) for w in words)}
    return colours, shapes


def classify(row: dict[str, Any], scenes: dict[str, dict[str, Any]]) -> str:
    """The class of one `--ranks-out` line (see CLASSES)."""
    if row["rank"] == 1:
        return "right"
    truth, top = scenes[Path(row["video"]).stem], scenes[Path(row["top"][0]["video"]).stem]
    if truth["group"] is not None and truth["group"] == top["group"]:
        return "near-duplicate"
    colours, shapes = named(row["caption"])
    if not colours <= {o["colour"] for o in top["objects"]}:
        return "named colour missing"
    if not shapes <= {o["shape"] for o in top["objects"]}:
        return "named shape missing"
    return "named colours and shapes present"


def analyse(run_dir: Path, data: Path, device: str) -> dict[str, Any]:
    from tvr.eval.evaluate import evaluate_model
    from tvr.models.registry import load_model

    scenes = {s["video_id"]: s for s in map(json.loads, (data / "scenes.jsonl").read_text().splitlines())}
    model = load_model(run_dir, device=device)
    pairs = split_pairs(model, run_dir, data / "test.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        ranks = Path(tmp) / "ranks.jsonl"
        evaluate_model(model, pairs, device=device, split="test", ranks_out=ranks)
        rows = [json.loads(line) for line in ranks.read_text().splitlines()]
    classes = [classify(r, scenes) for r in rows]
    counts = Counter(classes)
    misses = len(rows) - counts["right"]
    by_tag: dict[str, Counter] = {}
    confused: dict[str, Counter] = {}  # tag of the query → the near-duplicate ranked first, by its own tag
    for row, cls in zip(rows, classes, strict=True):
        for tag in row.get("tags") or ():
            by_tag.setdefault(tag, Counter())[cls] += 1
            if cls == "near-duplicate":
                top_tags = scenes[Path(row["top"][0]["video"]).stem].get("tags") or ["?"]
                confused.setdefault(tag, Counter())[top_tags[0]] += 1
    return {"queries": len(rows), "counts": {c: counts[c] for c in CLASSES},
            "share_of_misses": {c: round(100 * counts[c] / misses, 1) for c in CLASSES[1:]} if misses else {},
            "counts_by_tag": {t: {c: n[c] for c in CLASSES} for t, n in sorted(by_tag.items())},
            "near_duplicate_ranked_first_by_tag": {t: dict(sorted(n.items())) for t, n in sorted(confused.items())}}


def main() -> None:
    args = finished_runs_parser(__doc__, "error_analysis").parse_args()

    doc = read_results(args.out, "error_analysis")
    for name in args.run:
        doc["runs"][name] = analyse(args.runs_dir / name, args.data, args.device)
        atomic_write_json(args.out, doc)
    print("| run | queries | " + " | ".join(CLASSES) + " |")
    print("|---|---|" + "---|" * len(CLASSES))
    for name, r in doc["runs"].items():
        print(f"| {name} | all | " + " | ".join(str(r["counts"][c]) for c in CLASSES) + " |")
        for tag, counts in r.get("counts_by_tag", {}).items():
            print(f"| {name} | {tag} | " + " | ".join(str(counts[c]) for c in CLASSES) + " |")


if __name__ == "__main__":
    main()
