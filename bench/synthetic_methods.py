"""Train and evaluate retrieval methods on one synthetic world; write JSON and a Markdown table.

Every run is `NAME=METHOD` or `NAME=METHOD@CONFIG.json` (a `tvr train --config` file), so a new
method or ablation is benchmarked by naming it on the command line, not by editing this script:

    python bench/synthetic_methods.py --videos 1000 --epochs 10 \
        --run meanP=clip4clip-meanp --run seqTransf=clip4clip-seqtransf --postproc none is dis dsl

Runs are trained through the same `tvr.train.trainer.train` that `tvr train` uses (a finished run
directory is reused), evaluated on the test split of the world with every requested
post-processor (querybank = the training captions), overall and per tag (order, sound, small,
heldout, …). Results are merged into the JSON file by run name, so runs can be added later.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json, atomic_write_text

METRIC_KEYS = ("R@1", "R@5", "R@10", "MdR")


def ensure_world(data: Path, videos: int, seed: int, size: int) -> None:
    """Generate the synthetic world once (reused when its manifests exist)."""
    from tvr.eval.synthetic.generate import RenderConfig, generate
    from tvr.eval.synthetic.world import WorldConfig

    if (data / "test.jsonl").is_file():
        return
    generate(data, WorldConfig(videos=videos, seed=seed), RenderConfig(size=size), force=True)


def run_one(name: str, spec: str, data: Path, runs_dir: Path, epochs: int, postprocs: list[str], device: str) -> dict[str, Any]:
    from tvr.eval.evaluate import evaluate_model
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model
    from tvr.train.checkpoint import has_checkpoint, read_trainer_state
    from tvr.train.data import load_pairs
    from tvr.train.trainer import FRAMES_DIR, train

    method, _, config = spec.partition("@")
    run_dir = runs_dir / name
    t0 = time.monotonic()
    done = has_checkpoint(run_dir) and int(read_trainer_state(run_dir)["epoch"]) >= epochs
    if not done:
        train(data / "train.jsonl", method, run_dir, config_file=Path(config) if config else None,
              epochs=epochs, device=device, resume=has_checkpoint(run_dir), progress=True)
    train_s = time.monotonic() - t0
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    model = load_model(run_dir, device=device)
    test = read_manifest(data / "test.jsonl")
    bank = [e.caption for e in read_manifest(data / "train.jsonl").entries]
    pairs = load_pairs(test, model.input_spec(), run_dir / FRAMES_DIR, progress=False)
    results = {}
    for p in postprocs:
        report = evaluate_model(model, pairs, device=device, postproc=p, querybank_texts=bank, split="test")
        results[p] = {
            "t2v": {k: report["t2v"][k] for k in METRIC_KEYS},
            "v2t": {k: report["v2t"][k] for k in METRIC_KEYS},
            "by_tag": {t: {k: m[k] for k in METRIC_KEYS if k in m} for t, m in report.get("by_tag", {}).items()},
            "transductive": report.get("transductive", False),
        }
    return {
        "method": method, "config": config or None, "epochs": epochs,
        "train_wall_s_this_call": round(train_s, 1),
        "epoch_s": [h.get("epoch_s") for h in history],
        "n_test_queries": len(pairs.entries), "n_test_videos": len(pairs.clips),
        "chance_R@1": round(100.0 / len(pairs.clips), 3),
        "results": results,
    }


def markdown(doc: dict[str, Any], tags: tuple[str, ...] = ("order", "sound", "small", "heldout")) -> str:
    """One row per (run, post-processor): t2v and v2t R@1/5/10, MdR, t2v R@1 per tag, training epochs."""
    head = ["run", "postproc", "t2v R@1", "R@5", "R@10", "MdR", "v2t R@1", "R@5", "R@10", "MdR"]
    head += [f"R@1 {t}" for t in tags] + ["epochs", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, run in doc["runs"].items():
        epoch_s = [e for e in run["epoch_s"] if e]
        per_epoch = f"{sum(epoch_s) / len(epoch_s):.0f}" if epoch_s else "–"
        for p, r in run["results"].items():
            row = [name, p + (" (transductive)" if r["transductive"] else "")]
            row += [_fmt(r["t2v"][k]) for k in METRIC_KEYS] + [_fmt(r["v2t"][k]) for k in METRIC_KEYS]
            row += [_fmt(r["by_tag"].get(t, {}).get("R@1")) for t in tags] + [str(run["epochs"]), per_epoch]
            lines.append("| " + " | ".join(row) + " |")
    first = next(iter(doc["runs"].values()), None)
    if first:
        lines.append(f"\nTest split: {first['n_test_queries']} captions, {first['n_test_videos']} videos "
                     f"(chance R@1 = {first['chance_R@1']:.2f} %).")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="NAME=METHOD[@CONFIG.json]")
    ap.add_argument("--merge", nargs="+", type=Path, default=[],
                    help="result files of other invocations (e.g. run in parallel with their own --out) to merge by run name")
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench/world"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench"))
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--postproc", nargs="+", default=["none", "is", "dis", "dsl"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synthetic_methods.json")
    args = ap.parse_args()

    if not args.run and not args.merge:
        ap.error("give at least one --run or --merge")
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": {}}
    for other in args.merge:
        doc["runs"].update(json.loads(other.read_text())["runs"])
    if args.run:
        ensure_world(args.data, args.videos, args.seed, args.size)
    doc.update({"benchmark": "synthetic_methods", "world": {"videos": args.videos, "seed": args.seed, "size_px": args.size},
                "cpu_count": os.cpu_count()})
    for item in args.run:
        name, _, spec = item.partition("=")
        if not spec:
            raise SystemExit(f"--run {item!r}: expected NAME=METHOD[@CONFIG.json]")
        doc["runs"][name] = run_one(name, spec, args.data, args.runs_dir, args.epochs, args.postproc, args.device)
        atomic_write_json(args.out, doc)  # after every run: a long benchmark keeps what it finished
    atomic_write_json(args.out, doc)
    table = markdown(doc)
    atomic_write_text(args.out.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    main()
