"""A bounded load test of `tvr serve` on loopback: searches at two concurrencies, ranged video requests.

The server runs as its own process (`tvr serve`, as a user starts it); the clients are asyncio
(httpx) in this one. A warm-up brings the server to its steady state the way the load will use it
(its thread pool grown to the highest concurrency, allocator arenas, caches): 300 searches at
concurrency 32, 300 ranged video requests at 16 and 100 thumbnails at 8. Then 2,000 searches at
concurrency 16, 2,000 at 32, 2,000 ranged video requests at 16 and 500 thumbnails at 8. Each phase
reports requests/s, p50/p99 latency and errors; the server's RSS and thread count are read from
/proc after the warm-up and after every phase. Targets (issue): 0 errors, RSS growth <= 10 % after
warm-up.

    python bench/serve_load.py                       # builds a 200-video zero-shot index the first time
    python bench/serve_load.py --index my_index

Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json

QUERIES = ["a red circle moves left", "a small blue square", "a green triangle then a yellow star", "something beeps",
           "a large purple plus sign slides right", "two shapes side by side", "an orange disc stays still"]


def ensure_index(work: Path) -> Path:
    from tvr.index.build import BuildOptions, build_index
    from tvr.models.zero_shot import ZeroShotSpec
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig
    from tvr.train.pretrain import PretrainConfig, ensure_backbone

    index = work / "index"
    if (index / "index.json").is_file():
        return index
    if not (work / "world" / "all.jsonl").is_file():
        generate(work / "world", WorldConfig(videos=200, seed=3), RenderConfig(size=96), force=True)
    model = str(ensure_backbone(PretrainConfig()).path)
    build_index(work / "world" / "videos", ZeroShotSpec(model), index,
                BuildOptions(querybank=work / "world" / "train.jsonl", progress=False))
    return index


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_kb": fields["VmRSS"], "threads": fields["Threads"]}


async def phase(base: str, make_request, n: int, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            for i in todo:
                t0 = time.perf_counter()
                try:
                    r = await make_request(client, i)
                    ok = r.status_code in (200, 206)
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if key:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    pct = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1)  # noqa: E731
    return {"requests": n, "concurrency": concurrency, "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-serve-load"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    args = ap.parse_args()

    index = args.index or ensure_index(args.work)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["tvr", "serve", str(index), "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"tvr serve did not start: {server.stderr.read().decode()[-500:]}") from None
                time.sleep(0.2)
        n_videos = __import__("json").loads(urllib.request.urlopen(f"{base}/api/info").read())["n_videos"]
        rng = random.Random(0)

        async def search(client, i):
            return await client.get("/api/search", params={"q": QUERIES[i % len(QUERIES)], "k": 10})

        async def ranged_video(client, i):
            start = rng.randrange(0, 4096)
            return await client.get(f"/api/video/{i % n_videos}", headers={"Range": f"bytes={start}-{start + 65535}"})

        async def thumbnail(client, i):
            return await client.get(f"/api/thumbnail/{i % n_videos}", params={"t": round((i // n_videos) * 0.37 % 3, 2)})

        before = proc_status(server.pid)
        warm = {"search_c32": asyncio.run(phase(base, search, 300, 32)),
                "video_ranges_c16": asyncio.run(phase(base, ranged_video, 300, 16)),
                "thumbnails_c8": asyncio.run(phase(base, thumbnail, 100, 8))}
        after_warm_up = proc_status(server.pid)
        plan = {"search_c16": (search, args.requests, 16), "search_c32": (search, args.requests, 32),
                "video_ranges_c16": (ranged_video, args.requests, 16), "thumbnails_c8": (thumbnail, 500, 8)}
        results = {}
        for name, (make, n, concurrency) in plan.items():
            results[name] = asyncio.run(phase(base, make, n, concurrency))
            results[name]["server_after"] = proc_status(server.pid)
        end = proc_status(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    growth = (end["rss_kb"] - after_warm_up["rss_kb"]) / after_warm_up["rss_kb"]
    doc = {
        "benchmark": "serve_load", "cpu_count": os.cpu_count(), "index": str(index), "n_videos": n_videos,
        "server_at_start": before, "warm_up": warm, **results, "server_after_warm_up": after_warm_up, "server_at_end": end,
        "rss_growth_after_warm_up": round(growth, 4),
        "total_errors": sum(sum(r["errors"].values()) for r in results.values()),
        "targets": "0 errors; RSS growth <= 10 % after warm-up",
    }
    atomic_write_json(args.out, doc)
    for name, r in results.items():
        print(f"{name:>18}: {r['requests_per_s']:7.1f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}")
    print(f"server RSS {after_warm_up['rss_kb'] / 1024:.0f} → {end['rss_kb'] / 1024:.0f} MB ({100 * growth:+.1f} %), "
          f"threads {after_warm_up['threads']} → {end['threads']} → {args.out}")


if __name__ == "__main__":
    main()
