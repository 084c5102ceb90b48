"""Cost of one pretraining step, with captions encoded in one padded pass or in runs of similar length.

    python bench/pretrain_step.py            # the default recipe's shapes, 256 stills per step

Both ways run side by side in one process, alternating, on the same batches (the build's first
steps, `pretrain.step_batch`) and the same initial weights. Making a batch (rendering and tokenizing
the stills) is outside the timed part and measured on its own. A step is the loss, its backward pass
and the AdamW update. The losses of the two ways are recorded too: the
text tower is causal, so they agree up to float rounding. Writes bench/results/pretrain_step.json.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch

from tvr.atomic import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per way and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pretrain_step.json")
    args = ap.parse_args()

    from tvr.encoders.frames import pixel_scale
    from tvr.encoders.tokenizer import HFTokenizer
    from tvr.train import pretrain as P

    cfg = P.PretrainConfig()
    embedding, tok_dir = P.minilm_token_embedding()
    tokenizer = HFTokenizer(tok_dir)
    scale = pixel_scale()
    t0, c0 = time.perf_counter(), time.process_time()
    batches = [P.step_batch(cfg, step, tokenizer, scale) for step in range(args.steps)]
    making = {"wall_s": (time.perf_counter() - t0) / args.steps, "cpu_s": (time.process_time() - c0) / args.steps}
    lengths = torch.cat([m.sum(dim=1) for _, _, m, _ in batches]).float()

    ways = {"one padded pass": 1, f"{P.TEXT_LENGTH_GROUPS} runs by length": P.TEXT_LENGTH_GROUPS}
    results: dict[str, Any] = {w: {"wall_s": [], "cpu_s": [], "losses": None} for w in ways}
    for _ in range(args.rounds):
        for way, groups in ways.items():
            torch.manual_seed(cfg.seed)
            model = P.build_model(cfg, embedding).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
            t0, c0, losses = time.perf_counter(), time.process_time(), []
            for images, ids, mask, _ in batches:
                loss = P.contrastive_loss(model, images, ids, mask, text_groups=groups)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(round(float(loss.detach()), 5))
            results[way]["wall_s"].append(round((time.perf_counter() - t0) / len(batches), 3))
            results[way]["cpu_s"].append(round((time.process_time() - c0) / len(batches), 3))
            results[way]["losses"] = losses
    one, runs = (results[w] for w in ways)
    doc = {
        "benchmark": "pretrain_step", "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "batch_size": cfg.batch_size, "timed_steps": args.steps,
        "rounds": args.rounds, "caption_tokens": {"mean": round(lengths.mean().item(), 1), "max": int(lengths.max())},
        "make_batch_per_step": {k: round(v, 3) for k, v in making.items()},
        "per_step": results,
        "speedup_wall": round(sum(one["wall_s"]) / sum(runs["wall_s"]), 2),
        "speedup_cpu": round(sum(one["cpu_s"]) / sum(runs["cpu_s"]), 2),
        "max_loss_difference": max(abs(a - b) for a, b in zip(one["losses"], runs["losses"], strict=True)),
    }
    atomic_write_json(args.out, doc)
    print(f"per step (loss + backward + update), wall s: one padded pass {one['wall_s']}, runs {runs['wall_s']}; "
          f"×{doc['speedup_wall']} wall, ×{doc['speedup_cpu']} CPU; making a batch {doc['make_batch_per_step']}")


if __name__ == "__main__":
    main()
