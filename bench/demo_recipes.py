"""`tvr demo` as a new user meets it: a fresh cache, first run, fine-tuned and zero-shot, per recipe.

    python bench/demo_recipes.py --run default= --run distill=bench/configs/demo_distill.json

Each recipe (NAME=CONFIG; an empty CONFIG is the demo's own recipe, otherwise a `tvr demo --config`
file) runs `tvr demo --json` in its own work folder with its own empty cache (TVR_CACHE_DIR), so the
time includes building the demo's backbone (and, for a distilled recipe, its teacher), then
`tvr demo --zero-shot --json` on the same folder. Wall time and the CPU seconds of the process and
its children are recorded beside the test metrics, and what the first run built (each build's own
cost, from its info file). Recipes run one after another, never at once.
Writes bench/results/demo_recipes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import build_record

from tvr.atomic import atomic_write_json

MARKER = ".demo_recipes"  # in each work folder this bench made (and may replace)


def demo(folder: Path, cache: Path, *extra: str) -> dict[str, Any]:
    """One `tvr demo --json` process; its report's metrics and timings, with wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tvr.cli.main", "demo", "--out", str(folder), "--json", *extra],
                       capture_output=True, text=True, env={**os.environ, "TVR_CACHE_DIR": str(cache)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"tvr demo {' '.join(extra)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    report = json.loads(r.stdout)
    t2v = report["metrics"]["none"]["t2v"]
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "stages_s": report["timings_s"],
        "t2v": {k: round(v, 1) for k, v in t2v.items()},
        "t2v_is": {k: round(v, 1) for k, v in report["metrics"]["is"]["t2v"].items()},
        "search_top_5_hit_rate": round(report["search_top_k_hit_rate"], 1),
        "n_queries": report["n_search_queries"],
    }


def builds(cache: Path) -> dict[str, Any]:
    """What the first run built into its empty cache (backbone, teacher), with each build's own cost
    as its info file records it."""
    return {info.parent.name: build_record(info) for info in sorted((cache / "pretrained").glob("*/tvr_*.json"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="NAME=CONFIG",
                    help="a recipe; CONFIG empty for the demo's own")
    ap.add_argument("--work", type=Path, default=Path("runs/demo-recipes"), help="work folders (one per recipe, replaced on a rerun)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_recipes.json")
    args = ap.parse_args()

    recipes = {}
    for spec in args.run:
        name, sep, config = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"--run {spec!r}: expected NAME=CONFIG")
        if config and not Path(config).is_file():
            raise SystemExit(f"--run {spec!r}: {config} is not a file")
        recipes[name] = config
    for name in recipes:  # replace only what this bench made: refuse a folder it did not
        work = args.work / name
        if work.exists() and not (work / MARKER).is_file():
            raise SystemExit(f"{work}: exists and was not made by this bench; pick another --work")
    results: dict[str, Any] = {}
    for name, config in recipes.items():
        work = args.work / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / MARKER).touch()
        folder, cache = work / "demo", work / "cache"
        extra = ("--config", str(Path(config).resolve())) if config else ()
        trained = demo(folder, cache, *extra)
        zero_shot = demo(folder, cache, "--zero-shot", *extra)
        results[name] = {"config": config or None, "fine_tuned": trained, "zero_shot": zero_shot,
                         "builds": builds(cache)}
        print(f"{name}: {trained['wall_s']:.0f} s wall / {trained['cpu_s']:.0f} CPU-s, "
              f"R@1 {trained['t2v']['R@1']} R@5 {trained['t2v']['R@5']}; "
              f"zero-shot R@1 {zero_shot['t2v']['R@1']} R@5 {zero_shot['t2v']['R@5']}", flush=True)
    atomic_write_json(args.out, {
        "benchmark": "demo_recipes", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                 "processor": platform.processor()},
        "recipes": results,
    })


if __name__ == "__main__":
    main()
