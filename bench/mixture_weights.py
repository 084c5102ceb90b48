"""Where MMT's caption-dependent mixture puts its weight: the mean softmax weight of each expert over
a split's captions, and over those that name silence (`tvr.train.sound_negatives.sound_of`).

    python bench/mixture_weights.py --run mmt-objects --run mmt-sound-neg   # finished MMT runs

Writes bench/results/mixture_weights.json (merged by run name) and prints a table. Nothing is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchlib import finished_runs_parser, read_results

from tvr.atomic import atomic_write_json


def weights(run_dir: Path, manifest: Path, device: str) -> dict[str, Any]:
    import torch

    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_texts
    from tvr.models.registry import load_model
    from tvr.train.sound_negatives import sound_of

    model = load_model(run_dir, device=device)
    captions = [e.caption for e in read_manifest(manifest).entries]
    with torch.no_grad():
        w = torch.softmax(encode_texts(model, captions, device).weight_logits.float(), dim=-1)
    silent = torch.tensor([sound_of(c) == "silence" for c in captions])
    experts = list(model.config.experts)
    return {"captions": len(captions), "silence_captions": int(silent.sum()),
            "all": dict(zip(experts, (round(float(x), 3) for x in w.mean(0)), strict=True)),
            "silence": dict(zip(experts, (round(float(x), 3) for x in w[silent].mean(0)), strict=True))}


def main() -> None:
    args = finished_runs_parser(__doc__, "mixture_weights").parse_args()
    doc = read_results(args.out, "mixture_weights")
    for name in args.run:
        doc["runs"][name] = weights(args.runs_dir / name, args.data / "test.jsonl", args.device)
        atomic_write_json(args.out, doc)
    for name, r in doc["runs"].items():
        print(name, "all:", r["all"], "silence:", r["silence"])


if __name__ == "__main__":
    main()
