"""Time `model.similarity` on precomputed embeddings: N texts × M videos, several methods, one run.

Only scoring is timed (the paper's comparison): each model encodes a few real inputs once, and those
embeddings are tiled (with small noise) to N texts and M videos, so every method is timed on
embeddings of its own structure (frames, tokens, prototypes) at the same joint-space width and T.
Repeats are interleaved across methods (a machine shared with other jobs slows all of them alike)
and the median is reported, with ratios to meanP and the ProST-vs-TS2-Net speed-up:

    python bench/similarity_speed.py --texts 1000 --videos 1000 --dim 512 --frames 12 --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tvr.atomic import atomic_write_json

METHODS = ("clip4clip-meanp", "clip4clip-seqtransf", "ts2net", "prost")
ENCODE_ROWS = 8  # distinct real embeddings per side before tiling
WORDS = ("a", "red", "blue", "circle", "square", "moves", "left", "then", "small", "beside", "large", "cross")


def tiny_towers(dim: int, frames: int) -> dict[str, Any]:
    """Model overrides: small towers (encoding is not timed; 2 ViT blocks for TS2-Net's shift), width `dim`, T frames."""
    return {
        "num_frames": frames, "image_size": 32,
        "backbone": {"embed_dim": dim, "patch_size": 8, "vision_width": 64, "vision_layers": 2, "vision_heads": 2,
                     "text_width": 64, "text_layers": 1, "text_heads": 2, "vocabulary": list(WORDS)},
    }


def build(method: str, dim: int, frames: int) -> torch.nn.Module:
    from tvr.models.registry import create, lookup

    _, cfg_cls = lookup(method)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    overrides = {k: v for k, v in tiny_towers(dim, frames).items() if k in fields}
    torch.manual_seed(0)
    return create(method, **overrides).eval()


def tiled(emb: Any, n: int, seed: int) -> Any:
    """`emb` (ENCODE_ROWS rows) tiled to n rows; float fields get 1 % noise so rows differ."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(emb), (n,), generator=g)
    out = emb.select(rows)

    def jitter(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():
            return t
        return t + 0.01 * torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device) * t.abs().mean()

    return out._map(jitter)


def embeddings(model: Any, n_texts: int, n_videos: int, frames: int, device: torch.device) -> tuple[Any, Any]:
    from tvr.data.batch import TextBatch, VideoBatch

    g = torch.Generator().manual_seed(1)
    texts = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (int(k),), generator=g))
             for k in torch.randint(4, 12, (ENCODE_ROWS,), generator=g)]
    pix = torch.randint(0, 256, (ENCODE_ROWS, frames, 3, 32, 32), dtype=torch.uint8, generator=g)
    batch = VideoBatch(pix, torch.ones(ENCODE_ROWS, frames, dtype=torch.bool),
                       torch.arange(frames, dtype=torch.float32).expand(ENCODE_ROWS, frames).clone())
    with torch.no_grad():
        t = model.encode_text(TextBatch(texts)).detach()
        v = model.encode_video(batch).detach()
    return tiled(t, n_texts, 2).to(device), tiled(v, n_videos, 3).to(device)


def multiply_adds(method: str, model: Any, n: int, m: int, dim: int, frames: int) -> int:
    """Multiply-adds of the score's matrix products (what dominates on any hardware)."""
    if method.startswith("clip4clip"):
        return n * m * dim
    if method == "ts2net":
        return n * m * frames * dim  # text × every frame
    if method == "prost":
        c = model.config
        return n * m * dim * (c.phrase_prototypes * frames * (c.object_prototypes + 1) + c.event_prototypes)
    return 0


def timed(model: Any, t: Any, v: Any, device: torch.device) -> float:
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        s = model.similarity(t, v)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
    if s.shape != (len(t), len(v)) or not bool(torch.isfinite(s).all()):
        raise RuntimeError(f"{model.method}: similarity gave {tuple(s.shape)} (finite: {bool(torch.isfinite(s).all())})")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512, help="joint-space width of every model (CLIP ViT-B/32: 512)")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "similarity_speed.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from tvr.models.registry import names

    available = [m for m in args.methods if m in names()]
    missing = [m for m in args.methods if m not in names()]
    models, embs = {}, {}
    for m in available:
        models[m] = build(m, args.dim, args.frames).to(device)
        embs[m] = embeddings(models[m], args.texts, args.videos, args.frames, device)
        t_emb, v_emb = embs[m]
        timed(models[m], t_emb.select(slice(0, 50)), v_emb, device)  # warm-up (a slice: ProST is slow on CPU)
    times: dict[str, list[float]] = {m: [] for m in available}
    for _ in range(args.repeats):
        for m in available:
            times[m].append(timed(models[m], *embs[m], device))
    median = {m: statistics.median(ts) for m, ts in times.items()}
    base = median.get("clip4clip-meanp")
    results = {
        m: {
            "median_s": round(median[m], 5), "times_s": [round(x, 5) for x in times[m]],
            "ratio_to_meanp": round(median[m] / base, 2) if base else None,
            "multiply_adds": multiply_adds(m, models[m], args.texts, args.videos, args.dim, args.frames),
        }
        for m in available
    }
    doc: dict[str, Any] = {
        "benchmark": "similarity_speed",
        "what": f"model.similarity on precomputed embeddings, {args.texts} texts x {args.videos} videos",
        "texts": args.texts, "videos": args.videos, "dim": args.dim, "frames": args.frames, "repeats": args.repeats,
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "results": results, "missing_methods": missing,
    }
    if "prost" in median and "ts2net" in median:
        doc["prost_speedup_vs_ts2net"] = round(median["ts2net"] / median["prost"], 3)
    if "prost" in models:
        c = models["prost"].config
        doc["prost_config"] = {"phrase_prototypes": c.phrase_prototypes, "object_prototypes": c.object_prototypes,
                               "event_prototypes": c.event_prototypes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, doc)
    for m in available:
        r = results[m]
        print(f"{m:22s} median {r['median_s'] * 1e3:9.1f} ms  ×meanP {r['ratio_to_meanp']}  "
              f"GMAC {r['multiply_adds'] / 1e9:8.2f}")
    if "prost_speedup_vs_ts2net" in doc:
        print(f"ProST speed-up vs TS2-Net: {doc['prost_speedup_vs_ts2net']}×")
    if missing:
        print(f"not registered (skipped): {', '.join(missing)}")


if __name__ == "__main__":
    main()
