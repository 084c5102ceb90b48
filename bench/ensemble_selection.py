"""Choose the best pipeline's ensemble on a second world, not on the benchmark's test split.

The best pipeline is an equal-weight `tvr ensemble` of finished runs, and which runs to fuse was
chosen by measuring ensembles on the benchmark's test split. This bench makes that choice on a
world the benchmark never uses: `tvr synth`'s world of the same shape drawn with another seed
(`--select-seed`, default 7), whose test split (150 near-duplicate groups of four) stands in for a
validation split with near-duplicates. The runs were trained on the benchmark world; the second
world's scenes are new to them, its held-out colour-shape pairs are other pairs.

Each member is scored once per world; an ensemble's scores are then fused exactly as
`tvr.models.ensemble` fuses them, Σ_m α_m s_m with α_m = λ_m / Σ_k λ_k (each member's learned
logit scale), and ranked as `tvr eval` ranks (ties pessimistic). On the benchmark world the fused
R@1 is checked against the R@1 `synthetic_methods.py` measured for the same ensemble run, when
that run is in `--check`.

`--greedy POOL` builds an ensemble instead of comparing given ones: forward selection from a pool
of runs (Caruana et al., 2004, without replacement), starting from the pool's best run alone on
the second world and adding, step by step, the run that lifts the second world's R@1 most, until
no run lifts it. The path records each step's benchmark R@1 too, which the choice never reads.
`--bags N` adds Caruana's remedy for that procedure's overfitting to the world it selects on:
selection with replacement, repeated on N random halves of the second world's near-duplicate
groups, each run weighted by how often it was picked (`tvr ensemble --weights`). Each run's scores
are kept in `--scores-cache`, so trying another pool costs only the runs it adds.

    python bench/ensemble_selection.py \\
        --ensemble A=mmt-objects-1200+seqTransf-soup-default --ensemble B=... [--check bench/results/objects_steps.json]
    python bench/ensemble_selection.py --greedy meanP+mmt-objects-1200+... --out bench/results/ensemble_greedy.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import TAGS
from synthetic_methods import ensure_world

from tvr.atomic import atomic_write_json
from tvr.models.registry import load_model, lookup


def member_scores(model: Any, data: Path, frames: Path, device: str) -> dict[str, Any]:
    """The scores [captions, videos] on the cosine scale of a loaded run on `data`'s test split, each
    caption's video column ("gt"), its manifest entry ("entries") and the run's logit scale λ."""
    from tvr.eval.selection import run_scores
    from tvr.io.manifest import read_manifest

    s = run_scores(model, read_manifest(data / "test.jsonl"), frames, progress=False, device=device)
    return {"scores": s.scores, "gt": s.gt, "scale": s.scale, "entries": s.entries}


def run_digest(run_dir: Path) -> str:
    """A hash of a run's config and weights: its cached scores are reused while both are unchanged."""
    from tvr.checksums import sha256_file

    return sha256_file(run_dir / "config.json") + sha256_file(run_dir / "model.safetensors")


def cache_file(cache: Path, run_dir: Path, digest: str, data: Path) -> Path:
    """Where a run's scores on a world are kept."""
    key = hashlib.sha256(f"{digest}:{data.resolve()}".encode()).hexdigest()[:16]
    return cache / f"{run_dir.name}.{key}.npz"


def save_scores(path: Path, scored: dict[str, Any], data: Path) -> None:
    from tvr.io.manifest import read_manifest

    rows = {(e.video, e.caption, e.id): i for i, e in enumerate(read_manifest(data / "test.jsonl").entries)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, scores=scored["scores"], gt=np.asarray(scored["gt"], dtype=np.int64), scale=scored["scale"],
             rows=np.array([rows[(e.video, e.caption, e.id)] for e in scored["entries"]], dtype=np.int64))
    os.replace(tmp, path)


def load_scores(path: Path, data: Path) -> dict[str, Any]:
    from tvr.io.manifest import read_manifest

    entries = read_manifest(data / "test.jsonl").entries
    with np.load(path) as z:
        return {"scores": z["scores"], "gt": [int(g) for g in z["gt"]], "scale": float(z["scale"]),
                "entries": [entries[i] for i in z["rows"]]}


def fused_r1(members: list[str], scored: dict[str, Any], weights: list[float] | None = None) -> dict[str, float]:
    """t2v R@1 overall and per tag of the ensemble of `members` (already scored; one member: itself)
    with user weights w_m (`tvr ensemble --weights`; default 1 each)."""
    from tvr.eval.evaluate import metrics_by_tag
    from tvr.eval.selection import r_at_1

    scales = np.array([scored[m]["scale"] for m in members]) * np.asarray(weights or [1.0] * len(members))
    alphas = scales / scales.sum()
    fused = sum(a * scored[m]["scores"] for a, m in zip(alphas, members))
    gt, entries = scored[members[0]]["gt"], scored[members[0]]["entries"]
    for m in members[1:]:
        if scored[m]["gt"] != gt:
            raise SystemExit(f"{m}: its test pairs differ from {members[0]}'s (another frame sampling?)")
    by_tag = metrics_by_tag(fused, gt, entries)
    return {"R@1": round(r_at_1(fused, gt), 2)} | {
        tag: round(by_tag[tag]["R@1"], 2) for tag in TAGS if tag in by_tag}


def logits_of(pool: list[str], scored: dict[str, Any]) -> dict[str, np.ndarray]:
    """λ_m s_m per run: summed with weights, they rank as `tvr ensemble` ranks."""
    return {m: scored[m]["scale"] * scored[m]["scores"] for m in pool}


def greedy(pool: list[str], scored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`tvr.eval.selection.forward` on `scored["select"]`: the path of ensembles, each with its members
    and R@1 on both worlds; the last one is the choice."""
    from tvr.eval.selection import forward

    path = forward(logits_of(pool, scored["select"]), scored["select"][pool[0]]["gt"])
    for step in path[1:]:
        print(f"greedy: + {step.members[-1]}: select {step.r1:.2f}", flush=True)
    return [{"members": list(step.members), "select": fused_r1(list(step.members), scored["select"]),
             "benchmark": fused_r1(list(step.members), scored["benchmark"])} for step in path]


def bagged(pool: list[str], scored: dict[str, Any], bags: int, seed: int) -> dict[str, int]:
    """`tvr.eval.selection.bagged` on one world, bagging its near-duplicate groups."""
    from tvr.eval.selection import bagged as select_bagged

    units = [e.extra.get("group") for e in scored[pool[0]]["entries"]]
    return select_bagged(logits_of(pool, scored), scored[pool[0]]["gt"], units, bags=bags, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ensemble", action="append", default=[], help="NAME=RUN+RUN+… (run folders under --runs-dir)")
    ap.add_argument("--greedy", default=None, metavar="RUN+RUN+…", help="a pool of runs to select an ensemble from")
    ap.add_argument("--bags", type=int, default=0,
                    help="with --greedy: also bagged selection with replacement over this many bags (weights = picks)")
    ap.add_argument("--bag-seed", type=int, default=0)
    ap.add_argument("--scores-cache", type=Path, default=Path("runs/synth-bench-g4/selection-scores"),
                    help="each run's scores per world, reused while its weights are unchanged")
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"), help="the benchmark world")
    ap.add_argument("--select-data", type=Path, default=Path("runs/synth-bench-g4/world-select"))
    ap.add_argument("--select-seed", type=int, default=7)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench-g4"))
    ap.add_argument("--check", type=Path, default=None, help="a synthetic_methods.py result file holding the same ensembles")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ensemble_selection.json")
    args = ap.parse_args()
    if not args.ensemble and not args.greedy:
        ap.error("give --ensemble or --greedy")

    ensembles = {}
    for item in args.ensemble:
        name, _, spec = item.partition("=")
        if not spec or len(spec.split("+")) < 2:
            raise SystemExit(f"--ensemble {item!r}: expected NAME=RUN+RUN[+…]")
        ensembles[name] = spec.split("+")
    pool = args.greedy.split("+") if args.greedy else []
    if pool and len(set(pool)) < 2:
        raise SystemExit(f"--greedy {args.greedy!r}: expected at least two runs")
    members = list(dict.fromkeys([m for ms in ensembles.values() for m in ms] + pool))
    for m in members:  # what `tvr ensemble` could not write is no candidate (as `tvr ensemble --select-on` refuses it)
        method = json.loads((args.runs_dir / m / "config.json").read_text())["method"]
        if not lookup(method)[0].inner_product:
            raise SystemExit(f"{m}: a {method} model is not an inner-product model; tvr ensemble cannot fuse it")
    shape = {"train": 1200, "val": 120, "test": 600, "group_size": 4}
    ensure_world(args.select_data, shape, args.select_seed, 96)

    t0, c0 = time.monotonic(), time.process_time()
    worlds = {"select": args.select_data, "benchmark": args.data}
    scored: dict[str, dict[str, Any]] = {w: {} for w in worlds}
    for m in members:  # each run loaded once (if at all), scored on both worlds
        model, digest = None, run_digest(args.runs_dir / m)
        for world, data in worlds.items():
            cached = cache_file(args.scores_cache, args.runs_dir / m, digest, data)
            if cached.is_file():
                scored[world][m] = load_scores(cached, data)
                continue
            model = model or load_model(args.runs_dir / m, device=args.device)
            scored[world][m] = member_scores(model, data, data.parent / f"{data.name}-frames", args.device)
            save_scores(cached, scored[world][m], data)
        print(f"scored {m}", flush=True)

    recorded = json.loads(args.check.read_text())["runs"] if args.check else {}
    rows, mismatched = {}, []
    for name, ms in ensembles.items():
        rows[name] = {"members": ms, "select": fused_r1(ms, scored["select"]), "benchmark": fused_r1(ms, scored["benchmark"])}
        if name in recorded:  # the fusion here must be the one `tvr ensemble` computes
            expected = round(recorded[name]["results"]["none"]["t2v"]["R@1"], 2)
            rows[name]["benchmark_recorded"] = expected
            if abs(expected - rows[name]["benchmark"]["R@1"]) > 0.01:
                mismatched.append(f"{name}: fused R@1 {rows[name]['benchmark']['R@1']} here, {expected} recorded")
    doc: dict[str, Any] = {}
    if pool:
        path = greedy(list(dict.fromkeys(pool)), scored)
        rows["greedy"] = path[-1]
        doc["greedy_path"] = path
        if args.bags:
            weights = bagged(list(dict.fromkeys(pool)), scored["select"], args.bags, args.bag_seed)
            ms, ws = list(weights), [float(w) for w in weights.values()]
            rows["bagged"] = {"members": ms, "weights": ws, "bags": args.bags, "bag_seed": args.bag_seed,
                              "select": fused_r1(ms, scored["select"], ws), "benchmark": fused_r1(ms, scored["benchmark"], ws)}
    chosen = max(rows, key=lambda n: rows[n]["select"]["R@1"])
    doc |= {
        "benchmark": "ensemble_selection", "select_world": {**shape, "seed": args.select_seed, "size_px": 96},
        "members_alone": {m: {w: fused_r1([m], scored[w]) for w in worlds} for m in members},
        "ensembles": rows, "chosen_on_select_world": chosen, "chosen_benchmark_R@1": rows[chosen]["benchmark"]["R@1"],
        "wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(time.process_time() - c0, 1), "cpu_count": os.cpu_count(),
    }
    atomic_write_json(args.out, doc)
    for name, row in rows.items():
        print(f"{name}: select {row['select']['R@1']:.1f}  benchmark {row['benchmark']['R@1']:.1f}")
    print(f"chosen on the second world: {chosen} (benchmark R@1 {doc['chosen_benchmark_R@1']:.1f})")
    if mismatched:
        raise SystemExit("the fusion differs from the recorded ensembles:\n" + "\n".join(mismatched))


if __name__ == "__main__":
    main()
