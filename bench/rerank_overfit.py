"""Can the CrossTVR re-ranker fit at all? Train it on ONE fixed batch of a manifest's train split.

Over 1,200 videos a residual re-ranker's loss barely moves in 15 epochs (`rerank_synthetic.py`).
That is either a model that cannot fit (a bug, or too little capacity over frozen tokens) or one
that finds no correction that generalises in the steps it gets. This bench tells them apart: the
re-ranker is built and calibrated exactly as `tvr train --method crosstvr` builds it, then trained
with the trainer's own `batch_loss` on the first batch of the first epoch, with a fixed cycle of
hard-negative draws, and the loss is recorded every few steps.

    python bench/rerank_overfit.py --first-stage runs/synth-bench-g4/seqTransf-video-init-e8 \\
        --manifest runs/synth-bench-g4/crosstvr-residual-stacked-calibrated.manifest.jsonl \\
        --config bench/configs/crosstvr_residual.json --steps 120

Writes bench/results/rerank_overfit.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from tvr.atomic import atomic_write_json


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model, make_config
    from tvr.train.presets import resolve
    from tvr.train.rerank_trainer import (
        FROZEN_CACHE_DIR,
        batch_loss,
        build_reranker,
        first_stage_sha,
        frozen_from_store,
        new_reranker_config,
    )
    from tvr.train.trainer import FRAMES_DIR, batches_for_epoch, param_groups, split_for_training

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first-stage", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, required=True, help="its train split gives the batch")
    ap.add_argument("--config", type=Path, default=None, help="a `tvr train --config` file for method crosstvr")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--draws", type=int, default=4, help="hard-negative draws cycled through")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rerank_overfit.json")
    args = ap.parse_args()

    dev = torch.device("cpu")
    first_dir = args.first_stage.resolve()
    first = load_model(first_dir, device=dev)
    for p in first.parameters():
        p.requires_grad_(False)
    _, overrides, cfg, _ = resolve(args.config, "crosstvr")
    train_m, _ = split_for_training(read_manifest(args.manifest), cfg)
    spec = first.input_spec()
    frozen = frozen_from_store(first, train_m, spec, first_dir / FRAMES_DIR, cfg.workers, dev, first_dir / FROZEN_CACHE_DIR,
                               first_stage_sha(first_dir))
    model_cfg = make_config("crosstvr", {**overrides, "num_frames": spec.num_frames, "image_size": spec.image_size}, where="config")
    model_cfg, bias = new_reranker_config(model_cfg, first, frozen, cfg)
    model = build_reranker("crosstvr", model_cfg, cfg.seed, bias)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr)
    caps, rows = next(iter(batches_for_epoch(frozen.pairs, cfg, 0)))
    curve = []
    t0, c0 = time.monotonic(), cpu_s()
    for step in range(args.steps):
        rng = np.random.default_rng([cfg.seed, 0, step % args.draws])
        loss = batch_loss(model, frozen, caps, rows, first, rng, dev)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.every == 0 or step == args.steps - 1:
            curve.append({"step": step, "loss": round(float(loss.detach()), 4)})
            print(curve[-1], flush=True)
    doc = {
        "benchmark": "rerank_overfit", "first_stage": str(args.first_stage), "manifest": str(args.manifest),
        "config": str(args.config) if args.config else None, "batch_positives": len(caps), "lr": cfg.lr,
        "residual": bool(model_cfg.residual), "first_stage_scale": model_cfg.first_stage_scale, "steps": args.steps,
        "draws": args.draws, "wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(cpu_s() - c0, 1), "loss": curve,
    }
    atomic_write_json(args.out, doc)
    print(json.dumps({k: v for k, v in doc.items() if k != "loss"}))


if __name__ == "__main__":
    main()
