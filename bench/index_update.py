"""Full build vs incremental update of a zero-shot index, measured side by side in one run.

A folder of synthetic videos is indexed zero-shot with a pretrained CLIP (default: the synthetic
backbone `tvr pretrain` builds with its default recipe, cached per machine). Then 1 % of the folder
changes, as the issue describes it for 1,000 videos: 10 videos added, 3 changed, 2 deleted. The
update re-runs the same `build_index`, with the feature store and the previous index in place. A
re-run with nothing changed is timed too. All three run in this process after one warm-up load of
the model (so the one-time import of torch/transformers counts for none of them); the same update
is also timed as a user runs it, a fresh `tvr index` process, start-up included. Separately, the
encoder's throughput is measured on the decoded frames alone (frames per second through the model).

    python bench/index_update.py                      # 1,000 videos, 64 px, 3 s; ~5 min on 2 cores
    python bench/index_update.py --videos 200 --model PATH_TO_CLIP

Writes bench/results/index_update.json. Times are wall seconds with CPU seconds beside them (this
process and its decode workers).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json


def cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[Any, dict[str, float]]:
    c0, t0 = cpu_s(), time.perf_counter()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(cpu_s() - c0, 2)}


def make_folder(work: Path, videos: int, size: int, seconds: float, workers: int) -> tuple[Path, list[Path]]:
    """`work/videos` with `videos` synthetic videos, and 13 spare videos of another world (added or swapped in)."""
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig

    main, spare = work / "world", work / "spare"
    render = RenderConfig(size=size, seconds=seconds)
    if not (main / "all.jsonl").is_file():
        generate(main, WorldConfig(videos=videos, seed=0), render, workers=workers, force=True)
    if not (spare / "all.jsonl").is_file():
        generate(spare, WorldConfig(videos=20, seed=1), render, workers=workers, force=True)
    folder = work / "videos"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(main / "videos", folder)
    return folder, sorted((spare / "videos").iterdir())[:13]


def change_folder(folder: Path, spare: list[Path], tag: str = "added", at: int = 100) -> dict[str, list[str]]:
    """Add 10 (named TAGnn), change 3 (same name, other content), delete 2, counting from position `at`."""
    present = sorted(folder.iterdir())
    added = []
    for i, src in enumerate(spare[:10]):
        dst = folder / f"{tag}{i:02d}{src.suffix}"
        shutil.copyfile(src, dst)
        added.append(dst.name)
    changed = []
    for src, dst in zip(spare[10:13], present[at : at + 3], strict=True):
        shutil.copyfile(src, dst)  # the name stays; decoders go by the content, not the suffix
        changed.append(dst.name)
    deleted = [p.name for p in present[at + 100 : at + 102]]
    for name in deleted:
        (folder / name).unlink()
    return {"added": added, "changed": changed, "deleted": deleted}


def encode_throughput(index: Path, store: Path, device: str) -> dict[str, float]:
    """Frames per second through the model on decoded frames (no decoding), over the whole gallery."""
    import torch

    from tvr.data.clips import Clips
    from tvr.index import layout
    from tvr.index.items import ItemTable
    from tvr.models.encode import encode_clips
    from tvr.models.registry import load_model

    info = layout.read_info(index)
    model = load_model(info.path_of(index, layout.MODEL_WEIGHTS).parent, device=device)
    table = ItemTable(info.path_of(index, layout.ITEMS))
    keys = [i.key for i in table.all()]
    table.close()
    clips = Clips(store, keys, model.input_spec())
    frames = int(sum(clips.batch([i]).frame_mask.sum() for i in range(len(clips))))
    with torch.no_grad():
        _, cost = timed(lambda: encode_clips(model, clips, device))
    clips.close()
    return {"frames": frames, **cost, "frames_per_s": round(frames / cost["wall_s"], 1),
            "frames_per_cpu_s": round(frames / cost["cpu_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--model", default=None, help="a CLIP checkpoint (default: the synthetic backbone, default recipe)")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-index-update"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "index_update.json")
    args = ap.parse_args()

    import json
    import subprocess

    from tvr.index.build import BuildOptions, build_index
    from tvr.models.zero_shot import ZeroShotSpec, zero_shot_model
    from tvr.train.pretrain import PretrainConfig, ensure_backbone

    model = args.model or str(ensure_backbone(PretrainConfig()).path)
    folder, spare = make_folder(args.work, args.videos, args.size, args.seconds, args.workers)
    index, store = args.work / "index", args.work / "index" / "frames"
    shutil.rmtree(index, ignore_errors=True)
    spec = ZeroShotSpec(model, num_frames=args.frames)
    opts = BuildOptions(workers=args.workers, device=args.device, progress=False)
    _, warm_up = timed(lambda: zero_shot_model(spec))  # imports + first load: outside every measurement

    full, full_cost = timed(lambda: build_index(folder, spec, index, opts))
    changes = change_folder(folder, spare)
    update, update_cost = timed(lambda: build_index(folder, spec, index, opts))
    noop, noop_cost = timed(lambda: build_index(folder, spec, index, opts))
    make_folder_changes_again = change_folder(folder, spare, tag="again", at=300)  # another 1 %, for the CLI run
    cli = ["tvr", "index", str(folder), "--model", model, "--frames", str(args.frames), "--out", str(index),
           "--workers", str(args.workers), "--device", args.device, "--json"]
    done, cli_cost = timed(lambda: subprocess.run(cli, capture_output=True, text=True, check=True))
    cli_doc = json.loads(done.stdout)
    throughput = encode_throughput(index, store, args.device)

    doc = {
        "benchmark": "index_update", "cpu_count": os.cpu_count(), "model": model,
        "videos": args.videos, "size_px": args.size, "seconds": args.seconds, "frames_per_video": args.frames,
        "workers": args.workers, "changes": {k: len(v) for k, v in changes.items()},
        "full_build": {**full_cost, "n_items": full.n_items, "n_encoded": full.n_encoded},
        "update_1pct": {**update_cost, "n_items": update.n_items, "n_encoded": update.n_encoded,
                        "n_reused": update.n_reused, "n_dropped": update.n_dropped},
        "rerun_unchanged": {**noop_cost, "n_encoded": noop.n_encoded, "n_reused": noop.n_reused},
        "update_over_full": {"wall": round(update_cost["wall_s"] / full_cost["wall_s"], 4),
                             "cpu": round(update_cost["cpu_s"] / full_cost["cpu_s"], 4)},
        "warm_up_load": warm_up,
        "update_1pct_cli_process": {**cli_cost, "changes": {k: len(v) for k, v in make_folder_changes_again.items()},
                                    "n_encoded": cli_doc["n_encoded"], "n_reused": cli_doc["n_reused"],
                                    "over_full_wall": round(cli_cost["wall_s"] / full_cost["wall_s"], 4)},
        "encode_throughput": throughput,
        "target": "update of 1 % costs <= 5 % of a full build",
    }
    atomic_write_json(args.out, doc)
    print(f"full build {full_cost['wall_s']} s ({full_cost['cpu_s']} CPU-s), 1 % update {update_cost['wall_s']} s "
          f"({update_cost['cpu_s']} CPU-s): ratio {doc['update_over_full']['wall']:.3f} wall, "
          f"{doc['update_over_full']['cpu']:.3f} CPU; unchanged re-run {noop_cost['wall_s']} s; "
          f"the update as a fresh 'tvr index' process {cli_cost['wall_s']} s; "
          f"encoding {throughput['frames_per_s']} frames/s → {args.out}")


if __name__ == "__main__":
    main()
