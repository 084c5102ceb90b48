"""What does the `objects` expert's CNN see? The same checks as `backbone_probe.py`'s, for comparison:

- the held-out check `tvr pretrain --objects` writes (on 256 stills it never trained on: the right
  shape's label above the other three shapes' for the same colour and size, small and large
  objects apart; every label right at logit 0);
- the shape check on the test videos' own frames (`--world`, default the benchmark world of
  synthetic_methods.py): 8 decoded frames from every other test video, and for each object visible
  in a frame, whether the label with the right shape scores above the three other shapes' for its
  colour and size, by object size and by where it is (alone, apart from others, or beside another:
  the near-duplicates' small object sits a few pixels from a large one). backbone_probe.py's
  "video_frame_shapes" asks the CLIP backbone the same question with captions.

    python bench/objects_probe.py default=synthetic-objects
    python bench/objects_probe.py NAME=FOLDER 'short={"steps": 300}'

"synthetic-objects" is the default network (built into the cache first if needed); a JSON object is
a `tvr pretrain --objects` recipe (ObjectPretrainConfig fields over the defaults), built the same way.
Writes bench/results/objects_probe.json (merged by name).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import frames_with_objects, run_named


def frame_shapes(net: Any, world: Path, every: int = 2) -> dict[str, Any]:
    """Shape-check accuracy (%) on decoded test-video frames, by object size and surroundings."""
    from tvr.encoders.frames import frames_to_unit
    from tvr.synth.stills import ATTRIBUTES
    from tvr.synth.world import SHAPES

    frames, objects = frames_with_objects(world, net.config.image_size, every)
    with torch.no_grad():
        pixels = frames_to_unit(np.stack(frames))
        logits = torch.cat([net(pixels[i:i + 256]) for i in range(0, len(pixels), 256)])
    index = {a: i for i, a in enumerate(ATTRIBUTES)}
    right: dict[str, list[bool]] = defaultdict(list)
    for frame, group, obj, _near in objects:
        scores = logits[frame, [index[(obj.colour, s, obj.size)] for s in SHAPES]]
        right[group].append(int(scores.argmax()) == SHAPES.index(obj.shape))
    return {"videos": len(frames) // 8, "frames": len(frames), "chance": 25.0,
            "shape_R@1": {g: round(100 * float(np.mean(v)), 1) for g, v in sorted(right.items())},
            "n": {g: len(v) for g, v in sorted(right.items())}}


def probe(folder: Path, world: Path | None) -> dict[str, Any]:
    from tvr.encoders.objects import load_object_net
    from tvr.train.object_pretrain import INFO_FILE

    t0 = time.monotonic()
    net = load_object_net(folder)
    info = json.loads((folder / INFO_FILE).read_text()) if (folder / INFO_FILE).is_file() else {}
    return {"folder": str(folder), "recipe": info.get("config"), "build_wall_s": info.get("build_wall_s"),
            "build_cpu_s": info.get("build_cpu_s"), "heldout": info.get("heldout_stills"),
            "video_frame_shapes": frame_shapes(net, world) if world else None,
            "probe_wall_s": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("networks", nargs="+", help="NAME=FOLDER, NAME=synthetic-objects or NAME=RECIPE-JSON")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "objects_probe.json")
    ap.add_argument("--world", type=Path, default=Path("runs/synth-bench-g4/world"),
                    help="a tvr synth world for the check on test frames (skipped when it has no test.jsonl)")
    args = ap.parse_args()
    from tvr.encoders.objects import SYNTHETIC_OBJECTS
    from tvr.train.object_pretrain import ObjectPretrainConfig, ensure_objects

    world = args.world if (args.world / "test.jsonl").is_file() else None
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "objects_probe", "networks": {}}

    def probe_named(folder: str) -> dict[str, Any]:
        if folder == SYNTHETIC_OBJECTS or folder.lstrip().startswith("{"):
            recipe = json.loads(folder) if folder.lstrip().startswith("{") else {}
            folder = str(ensure_objects(ObjectPretrainConfig(**recipe)).path)
        return probe(Path(folder).expanduser(), world)

    run_named(args.networks, args.out, doc, "networks", probe_named, "NAME=FOLDER, NAME=synthetic-objects or NAME=RECIPE-JSON")

if __name__ == "__main__":
    main()
