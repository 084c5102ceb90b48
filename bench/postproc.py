"""Per-query cost of hubness post-processing with a precomputed QueryBank, as ratios to raw ranking.

QB-Norm's claim: with the querybank statistics precomputed, IS/DIS add O(N) work per query. For each
gallery size this builds a QueryBank from a querybank of random unit vectors (in gallery chunks, as
an index would), then times single queries: the score row (matrix-vector product), raw top-k
selection, and each post-processor followed by the same top-k selection. Times are per-query CPU
time (one BLAS thread), median over queries. Ratios are
(post-processing + top-k) / top-k, and the same with the score row included on both sides.

    python bench/postproc.py                        # 10^4, 10^5, 10^6 gallery items, 5,000-query bank
    python bench/postproc.py --sizes 10000 --out /tmp/pp.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

# one BLAS thread: every timed step then runs on the calling thread, and CPU time (below) is
# comparable between steps even when other processes share the cores
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from tvr.atomic import atomic_write_json  # noqa: E402
from tvr.postproc.querybank import QueryBank  # noqa: E402

METHODS = ("is", "dis", "csls", "gc", "cent")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def top_k(row: np.ndarray, k: int) -> np.ndarray:
    """The k best columns in order: argpartition + sort of k, what a search returns."""
    part = np.argpartition(row, row.size - k)[row.size - k :]
    return part[np.argsort(-row[part])]


def median_time(fn, repeats: int) -> float:
    """Median CPU seconds of `fn` (process CPU time: robust to other load on a shared machine)."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def bench_size(n_gallery: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    gallery = unit(rng.standard_normal((n_gallery, args.dim), dtype=np.float32))
    bank_q = unit(rng.standard_normal((args.bank, args.dim), dtype=np.float32))
    with_gc = n_gallery * args.bank * 4 <= args.max_gc_bytes
    step = max(1, (128 << 20) // (8 * args.bank))
    t0 = time.perf_counter()  # wall clock for the one-off build
    chunks = (bank_q @ gallery[lo : lo + step].T for lo in range(0, n_gallery, step))
    qb = QueryBank.from_score_chunks(chunks, beta=args.beta, with_gc=with_gc)
    build_s = time.perf_counter() - t0
    queries = unit(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    rows = [gallery @ q for q in queries]
    ms: dict[str, float] = {}
    ms["score_row"] = 1e3 * np.median([median_time(lambda q=q: gallery @ q, args.repeats) for q in queries])
    ms["raw_topk"] = 1e3 * np.median([median_time(lambda r=r: top_k(r, args.k), args.repeats) for r in rows])
    folded_q, folded_g = qb.folded_is_vectors(queries, gallery)
    folded_g = folded_g.astype(np.float32)
    ms["is_folded_score_row"] = 1e3 * np.median(
        [median_time(lambda q=q: folded_g @ q, args.repeats) for q in folded_q.astype(np.float32)]
    )
    skipped = {}
    for name in METHODS:
        if name == "gc" and not with_gc:
            skipped[name] = f"sorted bank scores would take {n_gallery * args.bank * 4 / 1e9:.0f} GB (> --max-gc-bytes)"
            continue
        ms[name] = 1e3 * np.median(
            [median_time(lambda r=r: top_k(qb.normalize(name, r), args.k), args.repeats) for r in rows]
        )
    raw, score = ms["raw_topk"], ms["score_row"]
    return {
        "n_gallery": n_gallery,
        "n_bank": args.bank,
        "querybank_build_s": round(build_s, 3),
        "per_query_ms": {k: round(v, 4) for k, v in ms.items()},
        "ratio_vs_raw_topk": {m: round(ms[m] / raw, 2) for m in METHODS if m in ms},
        "ratio_vs_score_row_and_topk": {
            **{m: round((score + ms[m]) / (score + raw), 2) for m in METHODS if m in ms},
            "is_folded": round((ms["is_folded_score_row"] + raw) / (score + raw), 2),
        },
        "skipped": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--bank", type=int, default=5000, help="querybank size")
    parser.add_argument("--dim", type=int, default=256, help="embedding width for the score rows")
    parser.add_argument("--queries", type=int, default=30, help="timed queries per size")
    parser.add_argument("--repeats", type=int, default=3, help="timings per query (median)")
    parser.add_argument("--k", type=int, default=10, help="top-k returned per query")
    parser.add_argument("--beta", type=float, default=20.0)
    parser.add_argument("--max-gc-bytes", type=float, default=4e9, help="skip GC when its sorted bank is larger")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "postproc.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    doc = {
        "bench": "postproc",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "numpy": np.__version__},
        "results": [],
    }
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        result = bench_size(n, args, rng)
        doc["results"].append(result)
        atomic_write_json(args.out, doc)  # keep finished sizes if a larger one is interrupted
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
