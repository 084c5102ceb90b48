"""What does a pretrained backbone see? Checks on stills it never trained on, and on videos, for CLIP folders:

- the held-out check `tvr pretrain` writes (image↔caption R@1 among 256 stills, and the shape check:
  the right shape's caption against the other three shapes' on one-object stills);
- a linear probe: a logistic regression on the frozen image tower's CLS state (before the
  projection), fitted on 2,000 one-object stills to name the object's shape and scored on 1,000
  others. It asks the image tower alone, so a low score is the image tower's, not the text side's;
- zero-shot video retrieval (with --world, default the benchmark world of synthetic_methods.py when
  it exists): meanP over the frozen towers, 8 frames, on the world's test split, t2v per tag. This
  is the check that matters: a backbone can read stills better and retrieve videos worse;
- the shape check on the test videos' own frames (with --world): 8 decoded frames from every other
  test video, and for each object visible in a frame, whether "a SIZE COLOUR SHAPE" with the right
  shape beats the three other shapes, by object size and by where it is: alone in the frame, with
  others apart, or beside another object (closer than the stills' spacing rule allows, judged from
  the start positions: a world "beside" pair moves together). The near-duplicates' small object
  sits a few pixels from a large one, a layout random stills never show. For that case also with
  the neighbour named ("a small red cross next to a large green square", the small shape varied).

    python bench/backbone_probe.py NAME=FOLDER [NAME=FOLDER …]
    python bench/backbone_probe.py 'p8-600={"patch_size": 8, "steps": 600, "batch_size": 128, "warmup_steps": 30}'

A JSON object instead of a folder is a `tvr pretrain` recipe (PretrainConfig fields over the
defaults): it is built into the cache first (reused when built), so short recipes can be compared.
Writes bench/results/backbone_probe.json (merged by name).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import run_named

FIT, SCORE = 2000, 1000


def linear_probe(model: Any, size: int, mean: torch.Tensor, std: torch.Tensor) -> dict[str, float]:
    """Shape accuracy (%) of a logistic regression on the frozen CLS state, overall and by object size."""
    from tvr.synth.stills import StillSampler
    from tvr.synth.world import SHAPES

    pixels, objects = StillSampler([11, 7], size).one_object_stills(FIT + SCORE)
    with torch.no_grad():
        feats = model.visual.forward_tokens((torch.from_numpy(pixels).float() - mean) / std)[:, 0].double()
    feats = (feats - feats[:FIT].mean(0)) / (feats[:FIT].std(0) + 1e-8)
    labels = torch.tensor([SHAPES.index(o.shape) for o in objects])
    weight = torch.zeros(feats.shape[1], len(SHAPES), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(SHAPES), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(feats[:FIT] @ weight + bias, labels[:FIT]) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        right = ((feats[FIT:] @ weight + bias).argmax(1) == labels[FIT:]).numpy()
    sizes = np.array([o.size for o in objects[FIT:]])
    return {"shape_acc": round(100 * right.mean(), 1), "shape_acc_small": round(100 * right[sizes == "small"].mean(), 1),
            "shape_acc_large": round(100 * right[sizes == "large"].mean(), 1), "chance": 25.0,
            "fit": FIT, "scored": SCORE}


def video_zero_shot(folder: Path, world: Path) -> dict[str, Any]:
    """t2v metrics (overall and per tag) of meanP over `folder`'s frozen towers on `world`'s test split."""
    from benchlib import split_pairs, summarise

    from tvr.eval.evaluate import evaluate_model
    from tvr.models.zero_shot import ZeroShotSpec, zero_shot_model

    model = zero_shot_model(ZeroShotSpec(str(folder), num_frames=8))
    with tempfile.TemporaryDirectory() as frames:
        report = evaluate_model(model, split_pairs(model, Path(frames), world / "test.jsonl"), postproc="none", split="test")
    out = summarise(report)
    return {"world": str(world), "num_frames": 8, "t2v": out["t2v"], "t2v_R@1_by_tag": {t: m["R@1"] for t, m in out["by_tag"].items()}}


def video_frame_shapes(model: Any, tokenizer: Any, pre: Any, world: Path, every: int = 2) -> dict[str, Any]:
    """Shape-check accuracy (%) on decoded test-video frames, by object size and surroundings."""
    from collections import defaultdict

    from benchlib import frames_with_objects

    from tvr.encoders.frames import pixel_scale
    from tvr.synth.captions import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
    from tvr.synth.world import SHAPES, ObjectSpec

    def phrase(obj: ObjectSpec, shape: str | None = None) -> str:
        return f"a {SIZE_WORDS[obj.size][0]} {COLOUR_WORDS[obj.colour][0]} {SHAPE_WORDS[shape or obj.shape][0]}"

    frames, objects = frames_with_objects(world, pre.image_size, every)
    checks, texts = [], []  # checks: (frame index, group, right shape, first of its 4 texts)
    for frame, group, obj, near in objects:
        checks.append((frame, group, SHAPES.index(obj.shape), len(texts)))
        texts += [phrase(obj, s) for s in SHAPES]
        if obj.size == "small" and near:  # the same, naming its neighbour too, as captions do
            checks.append((frame, "small_beside_pair_text", SHAPES.index(obj.shape), len(texts)))
            texts += [f"{phrase(obj, s)} next to {phrase(near[0])}" for s in SHAPES]
    mean, std = pixel_scale(pre.mean, pre.std)
    with torch.no_grad():
        txt = torch.cat([F.normalize(model.encode_text(*tokenizer(texts[i:i + 512], 32)), dim=-1)
                         for i in range(0, len(texts), 512)])
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
        img = torch.cat([F.normalize(model.encode_image((x[i:i + 256] - mean) / std), dim=-1) for i in range(0, len(x), 256)])
    right: dict[str, list[bool]] = defaultdict(list)
    for frame, group, shape, first in checks:
        right[group].append(int((txt[first:first + len(SHAPES)] @ img[frame]).argmax()) == shape)
    return {"videos": len(frames) // 8, "frames": len(frames), "chance": 25.0,
            "shape_R@1": {g: round(100 * float(np.mean(v)), 1) for g, v in sorted(right.items())},
            "n": {g: len(v) for g, v in sorted(right.items())}}


def probe(folder: Path, world: Path | None) -> dict[str, Any]:
    from tvr.encoders.clip import load_clip
    from tvr.encoders.frames import pixel_scale
    from tvr.train.pretrain import INFO_FILE, PretrainConfig, heldout_accuracy

    t0 = time.monotonic()
    model, tokenizer, pre = load_clip(folder)
    mean, std = pixel_scale(pre.mean, pre.std)  # the folder's own preprocessing
    info = json.loads((folder / INFO_FILE).read_text()) if (folder / INFO_FILE).is_file() else {}
    cfg = PretrainConfig(**info["config"]) if "config" in info else PretrainConfig(image_size=pre.image_size)
    return {"folder": str(folder), "recipe": info.get("config"), "build_wall_s": info.get("build_wall_s"),
            "build_cpu_s": info.get("build_cpu_s"), "heldout": heldout_accuracy(model, tokenizer, cfg, (mean, std)),
            "linear_probe": linear_probe(model, pre.image_size, mean, std),
            "video_zero_shot": video_zero_shot(folder, world) if world else None,
            "video_frame_shapes": video_frame_shapes(model, tokenizer, pre, world) if world else None, "probe_wall_s": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("backbones", nargs="+", help="NAME=FOLDER (a Hugging Face CLIPModel folder)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backbone_probe.json")
    ap.add_argument("--world", type=Path, default=Path("runs/synth-bench-g4/world"),
                    help="a tvr synth world for the zero-shot video check (skipped when it has no test.jsonl)")
    args = ap.parse_args()
    world = args.world if (args.world / "test.jsonl").is_file() else None
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "backbone_probe", "backbones": {}}

    def probe_named(folder: str) -> dict[str, Any]:
        if folder.lstrip().startswith("{"):
            from tvr.train.pretrain import PretrainConfig, ensure_backbone

            folder = str(ensure_backbone(PretrainConfig(**json.loads(folder))).path)
        return probe(Path(folder).expanduser(), world)

    run_named(args.backbones, args.out, doc, "backbones", probe_named, "NAME=FOLDER or NAME=RECIPE-JSON")

if __name__ == "__main__":
    main()
