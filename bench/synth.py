"""Synthetic-world generation speed: videos/s for `tvr synth` at 64 and 96 px, 1 vs N workers.

Writes JSON (default bench/results/synth.json). Wall time depends on machine load, so the JSON
also records CPU seconds per video and the load average at the start of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from tvr.atomic import atomic_write_json
from tvr.synth.generate import RenderConfig, generate
from tvr.synth.world import WorldConfig


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(videos: int, size: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        cpu0, t0 = _cpu_s(), time.perf_counter()
        generate(Path(tmp) / "out", WorldConfig(videos=videos, seed=0), RenderConfig(size=size), workers=workers)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    return {
        "videos": videos, "size_px": size, "workers": workers, "wall_s": round(wall, 3),
        "videos_per_s": round(videos / wall, 2), "cpu_s_per_video": round(cpu / videos, 4),
        "load_avg_at_start": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth.json")
    args = parser.parse_args()
    rows = [run(args.videos, size, w) for size in (64, 96) for w in sorted({1, args.workers})]
    doc = {"benchmark": "synth", "cpu_count": os.cpu_count(), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, doc)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
