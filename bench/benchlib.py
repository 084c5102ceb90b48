"""Glue shared by the benchmarks that train and evaluate on the synthetic world.

Run as `python bench/NAME.py`, a benchmark finds this module beside it (the script's folder is on
`sys.path`). Everything here goes through the same code paths as the CLI: training resumes a
run directory, evaluation reads the run's own frame cache.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

METRIC_KEYS = ("R@1", "R@5", "R@10", "MdR")
TAGS = ("base", "order", "sound", "small", "heldout")  # the synthetic world's per-caption contrasts


def fmt(value: Any) -> str:
    """A table cell: one decimal for floats, '–' for a missing value."""
    return "–" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))


def metric_cells(result: dict[str, Any]) -> list[str]:
    """The table cells of a `summarise`d result: t2v R@1, R@5, R@10, MdR, then R@1 per tag."""
    return [fmt(result["t2v"][m]) for m in METRIC_KEYS] + [fmt(result["by_tag"].get(t, {}).get("R@1")) for t in TAGS]


def markdown_rows(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, then one line per row of cells."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return [line(head), "|" + "---|" * len(head), *map(line, rows)]


def summarise(report: dict[str, Any], directions: tuple[str, ...] = ("t2v",)) -> dict[str, Any]:
    """The headline metrics of an `evaluate_model` report: each direction, and t2v per tag (with its size)."""
    out: dict[str, Any] = {d: {k: report[d][k] for k in METRIC_KEYS} for d in directions}
    out["by_tag"] = {
        tag: {k: m[k] for k in METRIC_KEYS if k in m} | {"n": m.get("n_queries")}
        for tag, m in report.get("by_tag", {}).items()
    }
    return out


def build_record(info: Path) -> dict[str, Any]:
    """A pretrained network's build as its folder's info file records it: steps, wall and CPU seconds."""
    doc = json.loads(info.read_text())
    return {"steps": doc["steps"], "wall_s": doc["build_wall_s"], "cpu_s": doc["build_cpu_s"]}


def finished(run_dir: Path, epochs: int | None) -> bool:
    """Whether `run_dir` holds a run trained for `epochs` (None: its own configured number) or more."""
    from tvr.train.checkpoint import has_checkpoint, read_trainer_state

    if not has_checkpoint(run_dir):
        return False
    state = read_trainer_state(run_dir)
    return int(state["epoch"]) >= (epochs or int(state["train"]["epochs"]))


def split_pairs(model: Any, run_dir: Path, manifest: Path) -> Any:
    """The `PairSet` of `manifest` for `model`, decoded into (and reused from) the run's frame cache."""
    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest
    from tvr.train.trainer import FRAMES_DIR

    return load_pairs(read_manifest(manifest), model.input_spec(), Path(run_dir) / FRAMES_DIR, progress=False)


def finished_runs_parser(doc: str | None, benchmark: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that reads finished runs of synthetic_methods.py: --run (repeated),
    --data, --runs-dir, --device, and --out (default bench/results/BENCHMARK.json)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="run folder name under --runs-dir")
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/synth-bench-g4"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{benchmark}.json")
    return ap


def write_results(out: Path, doc: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write the JSON and its markdown table beside it (so the two never disagree); returns the table."""
    from tvr.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out, doc)
    table = markdown(doc)
    atomic_write_text(out.with_suffix(".md"), table)
    return table


def run_named(items: list[str], out: Path, doc: dict[str, Any], key: str, compute: Callable[[str], Any], expect: str) -> None:
    """For each NAME=VALUE of `items`: doc[key][NAME] = compute(VALUE), written to `out` after each (a
    long sweep keeps what it finished, merged by name with earlier ones) and printed as JSON."""
    from tvr.atomic import atomic_write_json

    for item in items:
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"{item!r}: expected {expect}")
        doc[key][name] = compute(value)
        atomic_write_json(out, doc)
        print(json.dumps({name: doc[key][name]}, indent=1))


def read_results(out: Path, benchmark: str) -> dict[str, Any]:
    """The results document at `out` (merged into by run name), or a new one."""
    return json.loads(out.read_text()) if out.is_file() else {"benchmark": benchmark, "runs": {}}


def frames_with_objects(world: Path, image_size: int, every: int = 2) -> tuple[list[Any], list[tuple[int, str, Any, list[Any]]]]:
    """8 decoded frames (at `image_size`) from every `every`-th test video of `world`, and for each
    object visible in a frame (frame index, "SIZE_WHERE", the object, the objects beside it): WHERE is
    "alone" in the frame, "apart" from the others, or "beside" another (closer than the stills'
    spacing rule allows, judged from the start positions: a world "beside" pair moves together)."""
    from tvr.io.decoded import DecodeSpec
    from tvr.io.video import decode
    from tvr.synth.render import frame_times
    from tvr.synth.stills import apart
    from tvr.synth.world import ObjectSpec

    scenes = [s for s in map(json.loads, (world / "scenes.jsonl").read_text().splitlines()) if s["split"] == "test"]
    seconds, fps = (json.loads((world / "world.json").read_text())["render"][k] for k in ("seconds", "fps"))
    times = frame_times(seconds, fps)
    frames: list[Any] = []
    checks: list[tuple[int, str, Any, list[Any]]] = []
    for scene in scenes[::every]:
        objects = [ObjectSpec(**o) for o in scene["objects"]]
        video = decode(world / "videos" / f"{scene['video_id']}{scene['extension']}", DecodeSpec(num_frames=8, size=image_size))
        for pixels, ts in zip(video.frames, video.timestamps_s):
            t = times[min(int(round(ts * fps)), len(times) - 1)]
            shown = [o for o in objects if o.t_start <= t < o.t_end]
            for obj in shown:
                others = [o for o in shown if o is not obj]
                near = [o for o in others if not apart(o, obj)]
                where = "beside" if near else "apart" if others else "alone"
                checks.append((len(frames), f"{obj.size}_{where}", obj, near))
            frames.append(pixels)
    return frames, checks
