"""Search at 10⁶ videos: build time, memory, latency and recall@10 of each FAISS index kind.

The gallery has the structure of real model output, not Gaussian noise. A `tvr synth` world of
2,000 videos is indexed zero-shot with the synthetic backbone (the model `tvr pretrain` builds);
its training videos' embeddings are the seeds. The gallery then grows to N by sampling around the
seeds: each new item is a seed moved in a random direction by a distance drawn from the seeds'
measured nearest-neighbour distances, and normalised, as meanP's embeddings are. Queries are the
text embeddings of the held-out test captions, so the modality gap is in the measurement; the
querybank (for IS) is the training captions.

For every kind: build seconds and bytes per video (the serialised index), p50/p99 latency of one
query and of batches of 64 on 2 threads, and recall@10 against exact search, for raw scores and for
IS folded into one more dimension (DESIGN §4) against exact IS.

    python bench/index_scale.py                        # N = 10⁶; ~20 min on 2 cores
    python bench/index_scale.py --n 100000 --kinds flat ivf-sq8

Writes bench/results/index_scale.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tvr.atomic import atomic_write_json

KINDS = {  # name → IndexSpec fields
    "flat": {"kind": "flat"},
    "hnsw32": {"kind": "hnsw", "hnsw_m": 32, "hnsw_ef_search": 128},
    "ivf-flat": {"kind": "ivf", "ivf_probe": 32},
    "ivf-fp16": {"kind": "ivf-fp16", "ivf_probe": 32},
    "ivf-sq8": {"kind": "ivf-sq8", "ivf_probe": 32},
    "ivf-sq8-p64": {"kind": "ivf-sq8", "ivf_probe": 64},
    "ivf-pq": {"kind": "ivf-pq", "ivf_probe": 32},
}


def seeds_and_queries(work: Path, videos: int) -> dict[str, np.ndarray]:
    """Video embeddings of the training split, text embeddings of the test captions and of the
    training captions (querybank), from a zero-shot index of a synthetic world (built once)."""
    import torch

    from tvr.index.build import BuildOptions, build_index
    from tvr.index.search import Searcher
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_texts
    from tvr.models.zero_shot import ZeroShotSpec
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig
    from tvr.train.pretrain import PretrainConfig, ensure_backbone

    cache = work / "embeddings.npz"
    if cache.is_file():
        return dict(np.load(cache))
    world = work / "world"
    if not (world / "all.jsonl").is_file():
        generate(world, WorldConfig(videos=videos, seed=11), RenderConfig(size=64, seconds=2.0), force=True)
    model = str(ensure_backbone(PretrainConfig()).path)
    build_index(world / "train.jsonl", ZeroShotSpec(model), work / "index", BuildOptions(kind="flat", progress=False))
    searcher = Searcher.open(work / "index")
    try:
        with torch.no_grad():
            seeds = searcher.model.gallery_vectors(searcher.gallery).float().numpy()
            text = lambda m: searcher.model.query_vectors(  # noqa: E731
                encode_texts(searcher.model, [e.caption for e in read_manifest(world / m).entries], "cpu")).float().numpy()
            out = {"seeds": seeds, "queries": text("test.jsonl"), "bank": text("train.jsonl")}
    finally:
        searcher.close()
    np.savez(cache, **out)
    return out


def grow(seeds: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` unit vectors: the seeds, then seeds moved by nearest-neighbour-sized random steps."""
    rng = np.random.default_rng(seed)
    sims = seeds @ seeds.T
    np.fill_diagonal(sims, -np.inf)
    nn_dist = np.sqrt(np.maximum(0.0, 2 - 2 * sims.max(axis=1)))  # chord distance to the nearest other seed
    out = np.empty((n, seeds.shape[1]), np.float32)
    out[: len(seeds)] = seeds
    step = 100_000
    for lo in range(len(seeds), n, step):
        m = min(step, n - lo)
        base = rng.integers(len(seeds), size=m)
        direction = rng.standard_normal((m, seeds.shape[1])).astype(np.float32)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        dist = rng.choice(nn_dist, size=m).astype(np.float32)[:, None]
        x = seeds[base] + dist * direction
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    return index.search(queries, k)[1]


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got.tolist(), truth.tolist(), strict=True)]))


def latency_ms(index: Any, queries: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    times = []
    for r in range(rounds):
        rows = np.arange(r * batch, (r + 1) * batch) % len(queries)
        q = queries[rows]
        t0 = time.perf_counter()
        index.search(q, 10)
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 3), "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 3)}


def measure_milvus(work: Path, gallery: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """milvus-lite (embedded, a file) with an exact inner-product index: insert time, latency, recall@10."""
    import shutil

    from tvr.index.milvus_index import MilvusIndex, close_clients
    from tvr.index.vector_index import IndexSpec

    db = work / "milvus"
    shutil.rmtree(db, ignore_errors=True)
    t0 = time.perf_counter()
    index = MilvusIndex.build(gallery, IndexSpec(kind="flat"), uri=str(db / "bench.db"), collection="bench")
    build_s = time.perf_counter() - t0
    row = {"n": int(len(gallery)), "build_s": round(build_s, 1), "rows_per_s": round(len(gallery) / build_s),
           "db_bytes_per_video": round(sum(f.stat().st_size for f in db.rglob("*") if f.is_file()) / len(gallery), 1),
           "recall@10": round(recall(index.search(queries, 10)[1], exact_top(queries, gallery, 10)), 4),
           "one_query": latency_ms(index, queries, 1, 20), "batch_64": latency_ms(index, queries, 64, 3)}
    close_clients()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--videos", type=int, default=2000, help="synthetic videos whose embeddings seed the gallery")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--recall-queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--milvus-n", type=int, default=20_000,
                    help="milvus-lite is measured on a gallery this large (its pure-Python server is far slower)")
    ap.add_argument("--milvus-only", action="store_true", help="measure milvus-lite only (and keep the FAISS rows)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-index-scale"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "index_scale.json")
    args = ap.parse_args()

    import faiss

    from tvr.index.vector_index import IndexSpec, VectorIndex
    from tvr.postproc.querybank import QueryBank

    faiss.omp_set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = seeds_and_queries(args.work, args.videos)
    if args.milvus_only:
        import json

        doc = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "index_scale"}
        doc["milvus_lite"] = measure_milvus(args.work, grow(data["seeds"], args.milvus_n),
                                            data["queries"][: args.recall_queries].astype(np.float32))
        atomic_write_json(args.out, doc)
        print(doc["milvus_lite"])
        return
    t0 = time.perf_counter()
    gallery = grow(data["seeds"], args.n)
    grow_s = time.perf_counter() - t0
    queries = data["queries"][: args.recall_queries].astype(np.float32)
    # IS folded exactly into one more dimension (DESIGN §4), statistics over the whole gallery
    chunk = 50_000
    bank = QueryBank.from_score_chunks((data["bank"] @ gallery[lo : lo + chunk].T for lo in range(0, len(gallery), chunk)),
                                       with_gc=False)
    folded_q, folded_g, _, _ = bank.conditioned_is_vectors(queries, gallery)  # what `tvr index` stores
    folded_q, folded_g = folded_q.astype(np.float32), folded_g.astype(np.float32)
    truth_raw, truth_is = exact_top(queries, gallery, 10), exact_top(folded_q, folded_g, 10)

    doc: dict[str, Any] = {
        "benchmark": "index_scale", "n": args.n, "dim": int(gallery.shape[1]), "threads": args.threads,
        "cpu_count": os.cpu_count(), "seeds": int(len(data["seeds"])), "queries": int(len(queries)),
        "querybank": int(len(data["bank"])), "grow_s": round(grow_s, 1), "kinds": {},
    }
    if args.out.is_file():  # the same gallery measured before: keep the kinds not measured now
        import json

        old = json.loads(args.out.read_text())
        if all(old.get(k) == doc[k] for k in ("n", "dim", "seeds", "queries", "querybank", "threads")):
            doc["kinds"] = old.get("kinds", {})
    for name in args.kinds:
        spec = IndexSpec(**KINDS[name])
        t0, c0 = time.perf_counter(), time.process_time()
        index = VectorIndex.build(gallery, spec)
        build = {"build_s": round(time.perf_counter() - t0, 1), "build_cpu_s": round(time.process_time() - c0, 1)}
        size = index.nbytes()
        row = {**build, "bytes_per_video": round(size / args.n, 1), "index_mb": round(size / 2**20, 1),
               "recall@10": round(recall(index.search(queries, 10)[1], truth_raw), 4),
               "one_query": latency_ms(index, queries, 1, 200), "batch_64": latency_ms(index, queries, 64, 20)}
        del index
        gc.collect()
        folded = VectorIndex.build(folded_g, spec)
        row["is_folded_recall@10"] = round(recall(folded.search(folded_q, 10)[1], truth_is), 4)
        del folded
        gc.collect()
        doc["kinds"][name] = row
        atomic_write_json(args.out, doc)
        print(f"{name:>12}: build {row['build_s']:7.1f} s  {row['bytes_per_video']:7.1f} B/video  "
              f"recall@10 {row['recall@10']:.3f} (IS folded {row['is_folded_recall@10']:.3f})  "
              f"1 query p50 {row['one_query']['p50_ms']:.2f} ms p99 {row['one_query']['p99_ms']:.2f} ms  "
              f"64 queries p50 {row['batch_64']['p50_ms']:.1f} ms", flush=True)
    atomic_write_json(args.out, doc)


if __name__ == "__main__":
    main()
