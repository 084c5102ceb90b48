"""CrossTVR two-stage retrieval on the shared synthetic world: first stage alone vs + re-ranking.

Re-rankers are named runs `NAME=CONFIG.json` (a `tvr train --config` file for method crosstvr),
trained on the train split through the same `tvr.train.rerank_trainer.train_rerank` as
`tvr train --method crosstvr --first-stage RUN` (a finished run directory is reused), then the test
split is evaluated with the first stage alone and re-ranked with every K, overall and per tag:

    python bench/rerank_synthetic.py --first-stage runs/synth-bench-g4/meanP --ks 15 --run default=

Results are merged by run name into bench/results/rerank_synthetic.json (+ .md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchlib import METRIC_KEYS, TAGS, finished, fmt, markdown_rows, metric_cells, split_pairs, summarise, write_results

from tvr.atomic import atomic_write_json, atomic_write_text


def evaluate(first_dir: Path, data: Path, rerank_dir: Path | None, ks: list[int], device: str) -> dict[str, Any]:
    from tvr.eval.evaluate import evaluate_model
    from tvr.models.registry import load_model, load_reranker
    from tvr.postproc.two_stage import TwoStage

    model = load_model(first_dir, device=device)
    pairs = split_pairs(model, first_dir, data / "test.jsonl")
    out: dict[str, Any] = {"n_test_queries": len(pairs.entries), "n_test_videos": len(pairs.clips)}
    if rerank_dir is None:
        out["first_stage"] = summarise(evaluate_model(model, pairs, device=device, split="test"))
        return out
    reranker, _, _ = load_reranker(rerank_dir, device=device)
    for k in ks:
        t0 = time.monotonic()
        report = evaluate_model(model, pairs, device=device, split="test", rerank=TwoStage(reranker, k, str(rerank_dir)))
        out[f"K={k}"] = summarise(report) | {"eval_s": round(time.monotonic() - t0, 1)}
    return out


def ensure_train_world(path: Path, videos: int, seed: int) -> None:
    """Render the stacking world once, as `train.init: "synthetic-videos"` renders its own: train
    scenes only, every colour-shape pair allowed, the benchmark's frame size, length and rate."""
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig
    from tvr.train.video_pretrain import RENDER_FPS, RENDER_SECONDS, RENDER_SIZE, WORLD_GROUP_SIZE

    if (path / "train.jsonl").is_file():
        return
    world = WorldConfig(videos=videos, seed=seed, val_fraction=0.0, test_fraction=0.0, heldout_pairs=0,
                        group_size=WORLD_GROUP_SIZE)
    generate(path, world, RenderConfig(size=RENDER_SIZE, seconds=RENDER_SECONDS, fps=RENDER_FPS), force=True)


def stacking_manifest(train_world: Path, data: Path, out: Path) -> Path:
    """A manifest of `train_world`'s train split and `data`'s val split, videos by absolute path."""
    lines = []
    for world, split in ((train_world, "train"), (data, "val")):
        for line in (world / f"{split}.jsonl").read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                entry["video"] = str((world / entry["video"]).resolve())
                lines.append(json.dumps(entry | {"split": split}))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def markdown(doc: dict[str, Any]) -> str:
    head = ["run", "K", *METRIC_KEYS] + [f"R@1 {t}" for t in TAGS] + [f"R@5 {t}" for t in ("small", "order")]

    def row(name: str, k: str, r: dict[str, Any]) -> list[str]:
        return [name, k, *metric_cells(r)] + [fmt(r["by_tag"].get(t, {}).get("R@5")) for t in ("small", "order")]

    rows = [row(f"first stage ({doc.get('first_stage_name', 'meanP')})", "–", doc["first_stage"]["first_stage"])]
    for name, run in doc["runs"].items():
        rows += [row(name, key[2:], r) for key, r in run["results"].items() if key.startswith("K=")]
    fs = doc["first_stage"]
    note = (f"\nTest split: {fs['n_test_queries']} captions, {fs['n_test_videos']} videos. "
            "Each re-ranker keeps its epoch with the best validation R@1 (two-stage).")
    return "\n".join([*markdown_rows(head, rows), note]) + "\n"


def main() -> None:
    from tvr.train.checkpoint import has_checkpoint
    from tvr.train.rerank_trainer import train_rerank

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="NAME=CONFIG.json (method crosstvr)")
    ap.add_argument("--first-stage", type=Path, default=Path("runs/synth-bench-g4/meanP"))
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--train-data", type=Path, default=None,
                    help="a world whose train split the re-rankers train on (default: --data's); rendered if absent")
    ap.add_argument("--train-videos", type=int, default=1200, help="videos of a --train-data world rendered here")
    ap.add_argument("--train-seed", type=int, default=7919, help="seed of a --train-data world rendered here")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench-g4"))
    ap.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--ks", type=int, nargs="+", default=[15])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rerank_synthetic.json")
    args = ap.parse_args()

    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": {}}
    if doc.get("first_stage_dir") not in (None, str(args.first_stage)):
        doc = {"runs": {}}  # another first stage: a new table (the old one is in git)
    doc.update({"benchmark": "rerank_synthetic", "first_stage_dir": str(args.first_stage),
                "first_stage_name": args.first_stage.name, "epochs": args.epochs})
    if args.train_data is not None:
        ensure_train_world(args.train_data, args.train_videos, args.train_seed)
    doc["first_stage"] = evaluate(args.first_stage, args.data, None, args.ks, args.device)
    atomic_write_json(args.out, doc)
    for item in args.run:
        name, _, config = item.partition("=")
        run_dir = args.runs_dir / f"crosstvr-{name}"
        t0 = time.monotonic()
        manifest = args.data / "all.jsonl"
        if args.train_data is not None:
            manifest = stacking_manifest(args.train_data, args.data, args.runs_dir / f"crosstvr-{name}.manifest.jsonl")
        if not finished(run_dir, args.epochs):
            train_rerank(manifest, "crosstvr", run_dir, first_stage=args.first_stage,
                         config_file=Path(config) if config else None, epochs=args.epochs, device=args.device,
                         resume=has_checkpoint(run_dir), progress=True)
        history = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        doc["runs"][name] = {
            "config": config or None, "train_data": str(args.train_data or args.data), "epochs": len(history), "train_wall_s_this_call": round(time.monotonic() - t0, 1),
            "selected_epoch": json.loads((run_dir / "config.json").read_text()).get("selected_epoch"),
            "epoch_s": [h.get("epoch_s") for h in history], "val": [h.get("val") for h in history],
            "results": evaluate(args.first_stage, args.data, run_dir, args.ks, args.device),
        }
        atomic_write_json(args.out, doc)
    print(write_results(args.out, doc, markdown))


if __name__ == "__main__":
    main()
