"""Train and evaluate retrieval methods on one synthetic world; write JSON and a Markdown table.

Every run is `NAME=METHOD` or `NAME=METHOD@CONFIG.json` (a `tvr train --config` file), so a new
method or ablation is benchmarked by naming it on the command line, not by editing this script.
`NAME=ensemble@RUN+RUN+…` fuses finished runs of this benchmark with `tvr ensemble` (equal weights;
`RUN*W` gives a run the weight W, `tvr ensemble --weights`) and evaluates the fusion; nothing is
trained, and its cost is the sum of its members'.
`NAME=soup@RUN+RUN+…` averages their weights with `tvr soup` (equal weights) instead: one model.
The README's table of every method (issue: 1,200 training videos, 600 test videos in 150 groups
of four near-duplicates, 96 px, each method with its `tvr train` defaults):

    python bench/synthetic_methods.py --run meanP=clip4clip-meanp --run seqTransf=clip4clip-seqtransf \
        --run ts2net=ts2net --run prost=prost --run mmt=mmt --postproc none is dis

Runs are trained through the same `tvr.train.trainer.train` that `tvr train` uses (a finished run
directory is reused; no --epochs: the preset's), evaluated on the test split of the world with every
requested post-processor (querybank = the training captions), overall and per tag (base, order,
sound, small, heldout, …), and on the paraphrase twin (`test_paraphrase.jsonl`). Training cost is
the CPU seconds of the epochs (metrics.jsonl); building the pretrained backbone is not included
there but recorded beside it (`backbone_build`, from the backbone's and its teacher's info files).
Results are merged into the JSON file by run name.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from benchlib import METRIC_KEYS, TAGS, build_record, finished, fmt, split_pairs, summarise, write_results


def ensure_world(data: Path, shape: dict[str, int], seed: int, size: int) -> None:
    """Generate the synthetic world once (reused when its manifests exist)."""
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig

    if (data / "test.jsonl").is_file():
        return
    n = shape["train"] + shape["val"] + shape["test"]
    cfg = WorldConfig(videos=n, seed=seed, val_fraction=shape["val"] / n, test_fraction=shape["test"] / n,
                      group_size=shape["group_size"])
    generate(data, cfg, RenderConfig(size=size), force=True)


def run_one(name: str, spec: str, data: Path, runs_dir: Path, epochs: int | None, postprocs: list[str], device: str) -> dict[str, Any]:
    from tvr.models.registry import load_model
    from tvr.train.checkpoint import has_checkpoint
    from tvr.train.epochs import read_metrics
    from tvr.train.soup_trainer import is_soup_run
    from tvr.train.trainer import train

    method, _, config = spec.partition("@")
    run_dir = runs_dir / name
    t0 = time.monotonic()
    if method in ("ensemble", "soup"):  # ensemble@RUN+RUN+… / soup@…: runs of this benchmark assembled, nothing trained
        members = [r.partition("*") for r in config.split("+")]
        weights = tuple(float(w or 1) for _, _, w in members) if any(w for _, _, w in members) else ()
        return run_assembled(method, name, [runs_dir / r for r, _, _ in members], data, run_dir, postprocs, device, weights)
    if is_soup_run(run_dir):  # a recipe with soup members (MMT's default): finished members are skipped
        if not (run_dir / "config.json").is_file() or epochs is not None:
            train(data / "all.jsonl", method, run_dir, epochs=epochs, device=device, resume=True, progress=True)
    elif has_checkpoint(run_dir):
        if not finished(run_dir, epochs):
            train(data / "all.jsonl", method, run_dir, epochs=epochs, device=device, resume=True, progress=True)
    else:  # all.jsonl: trains on its train split, validates on val; the test split is never read
        train(data / "all.jsonl", method, run_dir, config_file=Path(config) if config else None,
              epochs=epochs, device=device, progress=True)
    train_s = time.monotonic() - t0
    history = read_metrics(run_dir)
    model = load_model(run_dir, device=device)
    pairs, results, paraphrase = evaluate_run(model, run_dir, data, postprocs, device)
    config_doc = json.loads((run_dir / "config.json").read_text())
    return {
        "method": method, "config": config or None, "epochs": len([h for h in history if "epoch" in h]),
        "soup_members": len(config_doc.get("soup_of") or []) or None,
        "selected_epoch": config_doc.get("selected_epoch"),
        "backbone": config_doc["config"].get("backbone", {}).get("pretrained"),
        "backbone_build": backbone_build(config_doc["config"].get("backbone", {}).get("pretrained")),
        "train_wall_s_this_call": round(train_s, 1),
        "train_cpu_s": round(sum(h.get("epoch_cpu_s") or 0 for h in history), 1),
        "train_wall_s": round(sum(h.get("epoch_s") or 0 for h in history), 1),
        "epoch_s": [h.get("epoch_s") for h in history],
        "val_R@1": [h.get("val", {}).get("t2v", {}).get("R@1") for h in history],
        "n_test_queries": len(pairs.entries), "n_test_videos": len(pairs.clips),
        "chance_R@1": round(100.0 / len(pairs.clips), 3),
        "results": results, "paraphrase_t2v": paraphrase,
    }


def backbone_build(path: str | None) -> dict[str, Any] | None:
    """What building a synthetic backbone cost and its held-out check, as its folder's info file records
    them, with its distillation teacher's own build (its folder's info file) where it has one; None for
    any other backbone."""
    from tvr.train import object_pretrain, pretrain

    info = Path(path) / pretrain.INFO_FILE if path else None
    if info is None or not info.is_file():
        return None
    doc = json.loads(info.read_text())
    build = build_record(info) | {"heldout_stills": doc.get("heldout_stills")}
    if doc.get("teacher"):  # built into the cache, wherever the backbone went
        teacher = object_pretrain.key_dir(doc["teacher"]) / object_pretrain.INFO_FILE
        if teacher.is_file():
            build["teacher"] = {"key": doc["teacher"]} | build_record(teacher)
    return build


def evaluate_run(model: Any, run_dir: Path, data: Path, postprocs: list[str], device: str) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(test pairs, results per post-processor, paraphrase-twin t2v metrics) of a loaded model."""
    from tvr.eval.evaluate import evaluate_model
    from tvr.io.manifest import read_manifest

    bank = [e.caption for e in read_manifest(data / "train.jsonl").entries]
    pairs = split_pairs(model, run_dir, data / "test.jsonl")
    results = {}
    for p in postprocs:
        report = evaluate_model(model, pairs, device=device, postproc=p, querybank_texts=bank, split="test")
        results[p] = summarise(report, ("t2v", "v2t")) | {"transductive": report.get("transductive", False)}
    paraphrase = None
    if (data / "test_paraphrase.jsonl").is_file():
        twin = split_pairs(model, run_dir, data / "test_paraphrase.jsonl")
        report = evaluate_model(model, twin, device=device, postproc="none", split="test")
        paraphrase = {k: report["t2v"][k] for k in METRIC_KEYS}
    return pairs, results, paraphrase


def run_assembled(kind: str, name: str, members: list[Path], data: Path, run_dir: Path, postprocs: list[str],
                  device: str, weights: tuple[float, ...] = ()) -> dict[str, Any]:
    """Fuse finished runs with `tvr ensemble`, or average them with `tvr soup` (`kind`; `weights`, else equal),
    and evaluate the result; its training cost is the sum of its members'."""
    from tvr.models.ensemble import write_ensemble
    from tvr.models.registry import load_model
    from tvr.models.soup import write_soup
    from tvr.train.epochs import read_metrics

    write = write_ensemble if kind == "ensemble" else write_soup
    summary = write(members, run_dir, weights, force=True)  # cheap; its frame cache is rebuilt
    model = load_model(run_dir, device=device)
    pairs, results, paraphrase = evaluate_run(model, run_dir, data, postprocs, device)
    histories = [read_metrics(m) for m in members]
    return {
        "method": kind, "config": None, "members": [m["run"] for m in summary["members"]], "weights": list(weights) or None,
        "shares": [m["share"] for m in summary["members"]], "epochs": None, "selected_epoch": None,
        "train_cpu_s": round(sum(h.get("epoch_cpu_s") or 0 for hist in histories for h in hist), 1),
        "train_wall_s": round(sum(h.get("epoch_s") or 0 for hist in histories for h in hist), 1),
        "n_test_queries": len(pairs.entries), "n_test_videos": len(pairs.clips),
        "chance_R@1": round(100.0 / len(pairs.clips), 3),
        "results": results, "paraphrase_t2v": paraphrase,
    }


def markdown(doc: dict[str, Any], tags: tuple[str, ...] = TAGS) -> str:
    """One row per (run, post-processor): t2v R@1/5, MdR, R@1 per tag, paraphrase twin R@1/10, v2t R@1, cost."""
    head = ["run", "postproc", "t2v R@1", "R@5", "MdR"] + [f"R@1 {t}" for t in tags]
    head += ["paraphrase R@1 / R@10", "v2t R@1", "epochs (kept)", "train CPU-s", "train wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, run in doc["runs"].items():
        para = run.get("paraphrase_t2v")
        para_cell = f"{para['R@1']:.1f} / {para['R@10']:.1f}" if para else "–"
        for i, (p, r) in enumerate(sorted(run["results"].items(), key=lambda kv: kv[0] != "none")):  # raw first
            row = [name, p + (" (transductive)" if r["transductive"] else "")]
            row += [fmt(r["t2v"][k]) for k in ("R@1", "R@5", "MdR")]
            row += [fmt(r["by_tag"].get(t, {}).get("R@1")) for t in tags]
            row += [para_cell if i == 0 else "", fmt(r["v2t"]["R@1"])]
            kept = f"{run['epochs']} ({run.get('selected_epoch', '–')})" if run["epochs"] else "–"
            row += [kept, fmt(run.get("train_cpu_s")), fmt(run.get("train_wall_s"))] if i == 0 else ["", "", ""]
            lines.append("| " + " | ".join(row) + " |")
    first = next(iter(doc["runs"].values()), None)
    if first:
        lines.append(f"\nTest split: {first['n_test_queries']} captions, {first['n_test_videos']} videos "
                     f"(chance R@1 = {first['chance_R@1']:.2f} %).")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="NAME=METHOD[@CONFIG.json]")
    ap.add_argument("--merge", nargs="+", type=Path, default=[],
                    help="result files of other invocations (e.g. run in parallel with their own --out) to merge by run name")
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench-g4"))
    ap.add_argument("--train-videos", type=int, default=1200)
    ap.add_argument("--val-videos", type=int, default=120)
    ap.add_argument("--test-videos", type=int, default=600)
    ap.add_argument("--group-size", type=int, default=4, choices=(2, 4))
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: each preset's own")
    ap.add_argument("--postproc", nargs="+", default=["none", "is", "dis"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synthetic_methods.json")
    args = ap.parse_args()

    if not args.run and not args.merge:
        ap.error("give at least one --run or --merge")
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": {}}
    for other in args.merge:
        doc["runs"].update(json.loads(other.read_text())["runs"])
    shape = {"train": args.train_videos, "val": args.val_videos, "test": args.test_videos, "group_size": args.group_size}
    world = {**shape, "seed": args.seed, "size_px": args.size}
    if doc.get("world") not in (None, world):
        print(f"{args.out}: results of another world ({doc['world']}); starting a new table (the old one is in git)")
        doc = {"runs": {}}
    if args.run:
        ensure_world(args.data, shape, args.seed, args.size)
    doc.update({"benchmark": "synthetic_methods", "world": world,
                "cpu_count": os.cpu_count()})
    for item in args.run:
        name, _, spec = item.partition("=")
        if not spec:
            raise SystemExit(f"--run {item!r}: expected NAME=METHOD[@CONFIG.json]")
        doc["runs"][name] = run_one(name, spec, args.data, args.runs_dir, args.epochs, args.postproc, args.device)
        write_results(args.out, doc, markdown)  # after every run: a long benchmark keeps what it finished
    print(write_results(args.out, doc, markdown))


if __name__ == "__main__":
    main()
