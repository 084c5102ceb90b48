"""What re-ranking K candidates adds to a query, as a ratio to the first-stage search, per gallery size.

Synthetic vectors and tokens with the shapes of the `cpu-small` preset (D=128, T=8, M=4 tokens per
frame, 32 text tokens) and the default `crosstvr` config. Per query:
- first stage = the text tower of a clip4clip-meanp model (random weights; cost only) + an exact
  FAISS inner-product search over the gallery (`tvr.index.vector_index`, kind "flat");
- re-ranking = gather the K candidates' cached tokens from an on-disk (memory-mapped) token cache
  + the re-ranker on K pairs + sorting.
Run on one thread and timed in process CPU time (time.process_time), so other processes sharing the
machine do not inflate the numbers; median over the queries.

    python bench/rerank_cost.py --galleries 1000 100000 --k 15 --out bench/results/rerank_cost.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.atomic import atomic_write_json

WORDS = "a red blue green yellow circle square triangle star moves left right up down then beside small large beep hum".split()


def make_first_stage() -> Any:
    from tvr.models.registry import build, lookup, make_config
    from tvr.train.presets import PRESETS

    model_over = {k: v for k, v in PRESETS["cpu-small"].model.items()}
    cfg = make_config("clip4clip-meanp", model_over)
    cfg = lookup("clip4clip-meanp")[0].adapt_config(cfg, [" ".join(WORDS)])
    torch.manual_seed(0)
    return build("clip4clip-meanp", cfg).eval()


def queries(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))) for _ in range(n)]


@torch.no_grad()
def measure(n_gallery: int, k: int, n_queries: int, first: Any, reranker: Any, workdir: Path) -> dict[str, Any]:
    from tvr.data.batch import TextBatch
    from tvr.index.vector_index import IndexSpec, VectorIndex
    from tvr.models.base import VideoEmb
    from tvr.models.crosstvr import frozen_text_tokens, text_emb_from_tokens
    from tvr.postproc.two_stage import top_k_candidates

    rng = np.random.default_rng(n_gallery)
    d, t, m = reranker.config.width, reranker.config.num_frames, reranker.config.tokens_per_frame
    vectors = rng.standard_normal((n_gallery, d), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.build(vectors, IndexSpec(kind="flat"))
    cache_path = workdir / f"tokens-{n_gallery}.npy"
    cache = np.lib.format.open_memmap(cache_path, mode="w+", dtype=np.float16, shape=(n_gallery, t, m, d))
    for i in range(0, n_gallery, 4096):  # written chunk by chunk, as a token cache is filled
        cache[i : i + 4096] = rng.standard_normal((min(4096, n_gallery - i), t, m, d), dtype=np.float32)
    cache.flush()
    del cache
    cache = np.load(cache_path, mmap_mode="r")
    frame_mask = torch.ones(k, t, dtype=torch.bool)
    first_ms, rerank_ms, pairs = [], [], 0
    for text in queries(n_queries + 3, rng):
        t0 = time.process_time()
        emb = first.encode_text(TextBatch([text]))
        scores, rows = index.search(first.query_vectors(emb).numpy(), k)
        t1 = time.process_time()
        tok, mask = frozen_text_tokens(first, [text])
        text_emb = text_emb_from_tokens(reranker, tok, mask)
        cand = torch.from_numpy(np.ascontiguousarray(cache[np.sort(rows[0])]).astype(np.float32))
        videos = VideoEmb(cand[:, 0, 0], frame_mask=frame_mask[: len(cand)], tokens=cand)
        second = reranker.score_pairs(text_emb.select([0] * len(cand)), videos).numpy()
        pairs += len(cand)
        top_k_candidates((scores[0] + second)[None], len(cand))
        t2 = time.process_time()
        first_ms.append(1e3 * (t1 - t0))
        rerank_ms.append(1e3 * (t2 - t1))
    first_ms, rerank_ms = first_ms[3:], rerank_ms[3:]  # warm-up queries dropped
    cache_path.unlink()
    f, r = statistics.median(first_ms), statistics.median(rerank_ms)
    return {
        "n_gallery": n_gallery, "k": k, "n_queries": n_queries, "first_stage_ms": round(f, 3), "rerank_ms": round(r, 3),
        "rerank_over_first_stage": round(r / f, 3), "total_ms": round(f + r, 3),
        "reranker_pairs_per_query": pairs / (n_queries + 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--galleries", type=int, nargs="+", default=[1000, 100000])
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rerank_cost.json")
    args = ap.parse_args()

    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    from tvr.models.registry import create

    first = make_first_stage()
    torch.manual_seed(0)
    reranker = create("crosstvr", width=128, num_frames=8, image_size=64).eval()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, args.k, args.queries, first, reranker, Path(tmp)) for n in args.galleries]
    doc = {
        "benchmark": "rerank_cost", "clock": "process CPU time (1 thread)", "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "shapes": {"D": 128, "T": 8, "M": reranker.config.tokens_per_frame, "text_tokens": 32,
                   "reranker": {"layers": reranker.config.layers, "num_queries": reranker.config.num_queries,
                                "heads": reranker.config.heads, "share_blocks": reranker.config.share_blocks}},
        "first_stage": "clip4clip-meanp text tower (cpu-small) + exact FAISS inner-product search",
        "results": rows,
    }
    atomic_write_json(args.out, doc)
    for r in rows:
        print(f"N={r['n_gallery']:>7}  first stage {r['first_stage_ms']:8.3f} ms  + re-rank K={r['k']} "
              f"{r['rerank_ms']:8.3f} ms  (×{r['rerank_over_first_stage']:.2f})  pairs/query {r['reranker_pairs_per_query']:.0f}")


if __name__ == "__main__":
    main()
