"""A world like the benchmark's with more training videos: is fine-tuning short of data?

The benchmark world (`bench/synthetic_methods.py`: seed 0, 1,200 train, 120 val, 600 test videos)
draws its scenes train first, then val, then test, from one seeded generator, and picks its
held-out colour-shape pairs first. A world of the same seed with only a train split therefore
starts with the benchmark's 1,200 train scenes, then its 120 val scenes (dropped here, so nothing
validated on is trained on), then new scenes, and it holds out the same pairs. This script makes
such a world and a manifest whose train split is its videos and whose val and test splits are the
benchmark's own, so a run on it is scored on exactly the benchmark's test set:

    python bench/more_train_videos.py --videos 5000 --out runs/scale
    python bench/synthetic_methods.py --data runs/scale/mix --runs-dir runs/scale \\
        --out bench/results/more_train_videos.json --run meanP-4880x3=clip4clip-meanp@bench/configs/epochs_3.json \\
        --run mmt-4880x7=mmt@bench/configs/epochs_7.json --run seqTransf-4880x4=clip4clip-seqtransf@bench/configs/epochs_4.json \\
        --postproc none

(Optimizer steps against the defaults over 1,200 videos: meanP 3 × 77 = 231 against 15 × 19 = 285,
seqTransf 4 × 77 = 308 against 285, MMT 7 × 77 = 539 against 25 × 19 = 475.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build(bench_world: Path, videos: int, out: Path) -> dict[str, int]:
    from tvr.atomic import atomic_write_text
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig

    bench_doc = json.loads((bench_world / "world.json").read_text())
    big = out / "world"
    if not (big / "all.jsonl").is_file():
        generate(big, WorldConfig(videos=videos, seed=bench_doc["world_config"]["seed"], val_fraction=0.0, test_fraction=0.0,
                                  group_size=bench_doc["group_size"]), RenderConfig(size=bench_doc["render"]["size"]), force=True)
    if json.loads((big / "world.json").read_text())["heldout_pairs"] != bench_doc["heldout_pairs"]:
        raise SystemExit(f"{big}: holds out other colour-shape pairs than {bench_world}")
    n_train = sum(1 for line in (bench_world / "train.jsonl").open() if line.strip())
    bench_scenes = [json.loads(line) for line in (bench_world / "scenes.jsonl").open()]
    big_scenes = [json.loads(line) for line in (big / "scenes.jsonl").open()]
    train_ids = {s["video_id"] for s in bench_scenes if s["split"] == "train"}
    val_ids = {s["video_id"] for s in bench_scenes if s["split"] == "val"}
    dropped = {s["video_id"] for s in big_scenes} & val_ids  # the same ids hold the same scenes (checked below)
    for a, b in zip(bench_scenes, big_scenes):  # the shared prefix is the same scenes, val included
        if a["split"] == "test":
            break
        if {**a, "split": ""} != {**b, "split": ""}:
            raise SystemExit(f"{big}: scene {b['video_id']} is not the benchmark's; is --videos large enough?")

    def rows(folder: Path, name: str, keep=lambda e: True) -> list[dict]:
        out_rows = []
        for line in (folder / name).open():
            if line.strip() and keep(e := json.loads(line)):
                out_rows.append({**e, "video": str((folder / e["video"]).resolve())})
        return out_rows

    train = rows(big, "all.jsonl", lambda e: Path(e["video"]).stem not in dropped)
    rest = rows(bench_world, "all.jsonl", lambda e: e["split"] != "train")
    mix = out / "mix"
    mix.mkdir(parents=True, exist_ok=True)
    for name, entries in {"all.jsonl": train + rest, "train.jsonl": train,
                          "test.jsonl": rows(bench_world, "test.jsonl"),
                          "test_paraphrase.jsonl": rows(bench_world, "test_paraphrase.jsonl")}.items():
        atomic_write_text(mix / name, "".join(json.dumps(e) + "\n" for e in entries))
    summary = {"train_videos": len({e["video"] for e in train}), "train_captions": len(train),
               "benchmark_train_videos_included": len(train_ids), "val_videos_dropped": len(dropped),
               "benchmark_train_captions": n_train}
    print(json.dumps(summary))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-world", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--videos", type=int, default=5000, help="videos in the train-only world (train + the val prefix)")
    ap.add_argument("--out", type=Path, default=Path("runs/scale"))
    args = ap.parse_args()
    build(args.bench_world, args.videos, args.out)


if __name__ == "__main__":
    main()
