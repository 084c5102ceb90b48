"""Generate a synthetic collection: sample the world, render + encode videos in parallel, write manifests.

Layout of OUT_DIR:
  videos/v000000.mp4 …     real encoded files (mostly MP4/H.264+AAC; some WebM/VP9+Opus and MKV)
  train.jsonl val.jsonl test.jsonl all.jsonl   manifests (tvr.io.manifest format, extra fields
                           `kind`, `tags` and, for test near-duplicates, `group`)
  test_paraphrase.jsonl    the test captions with every colour/shape/motion/sound word replaced by a
                           synonym no caption uses (paraphrase.py): does the text side know English?
  scenes.jsonl             every video's full scene description (for analysis and tests)
  world.json               vocabulary, held-out pairs, counts
Manifests are written last, so a collection with manifests is complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tvr.atomic import atomic_write_json, atomic_write_text
from tvr.errors import TvrError
from tvr.io.manifest import ManifestEntry, write_manifest
from tvr.synth.captions import captions_for
from tvr.synth.paraphrase import paraphrase
from tvr.synth.world import Scene, World, WorldConfig, sample_world

AUDIO_RATE_HZ = 16_000
PARAPHRASE_MANIFEST = "test_paraphrase.jsonl"
# Limits of `tvr synth`: rendering holds a whole video as float32 working arrays, about 40 bytes per
# pixel per frame, in every worker; 2**25 pixel-frames is about 1.3 GiB (e.g. 512² × 128 frames).
MAX_VIDEOS = 100_000
MIN_SIZE, MAX_SIZE = 16, 1024
MAX_SECONDS = 600.0
MAX_FPS = 120.0
MAX_FRAMES = 3600
MAX_PIXEL_FRAMES = 2**25
RENDER_BYTES_PER_PIXEL_FRAME = 40


@dataclass(frozen=True)
class RenderConfig:
    """How scenes become files."""

    size: int = 64
    seconds: float = 3.0
    fps: float = 8.0
    audio_rate_hz: int = AUDIO_RATE_HZ


@dataclass(frozen=True)
class SynthSummary:
    out_dir: str
    videos: int
    captions: int
    splits: dict[str, dict[str, int]]
    heldout_pairs: list[list[str]]
    workers: int
    elapsed_s: float
    videos_per_s: float


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse to write into a non-empty folder (or onto a file) unless forced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TvrError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise TvrError(f"{out_dir}: directory is not empty (use --force to write into it anyway)")


def check_limits(world_config: WorldConfig, render: RenderConfig) -> None:
    """Refuse sizes that cannot work (or would exhaust memory) before anything is written."""
    videos, size, seconds, fps = world_config.videos, render.size, render.seconds, render.fps
    if not 1 <= videos <= MAX_VIDEOS:
        raise TvrError(f"--videos must be in 1..{MAX_VIDEOS}, got {videos}")
    if not MIN_SIZE <= size <= MAX_SIZE or size % 2:
        raise TvrError(f"--size must be an even number of pixels in {MIN_SIZE}..{MAX_SIZE}, got {size}")
    if not 0 < seconds <= MAX_SECONDS:
        raise TvrError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    if not 0 < fps <= MAX_FPS:
        raise TvrError(f"--fps must be in (0, {MAX_FPS:g}], got {fps:g}")
    frames = seconds * fps
    if not 2 <= frames <= MAX_FRAMES:
        raise TvrError(f"--seconds × --fps must give 2..{MAX_FRAMES} frames per video, "
                       f"got {seconds:g} s × {fps:g} fps = {frames:g}")
    n_frames = round(frames)  # as render.frame_times counts them
    if size * size * n_frames > MAX_PIXEL_FRAMES:
        gib = size * size * n_frames * RENDER_BYTES_PER_PIXEL_FRAME / 2**30
        raise TvrError(
            f"--size {size} with {n_frames} frames per video (--seconds × --fps) needs about {gib:.1f} GiB per worker "
            f"to render; --size² × frames must be at most {MAX_PIXEL_FRAMES} "
            f"(--size {size} allows {MAX_PIXEL_FRAMES // (size * size)} frames)"
        )


def video_relpath(scene: Scene) -> str:
    return f"videos/{scene.video_id}{scene.extension}"


def manifest_entries(scenes: tuple[Scene, ...]) -> list[ManifestEntry]:
    """One manifest line per caption; extra fields carry the kind, tags and near-duplicate group."""
    entries = []
    for scene in scenes:
        extra: dict = {"kind": scene.kind, "tags": scene.all_tags}
        if scene.group is not None:
            extra["group"] = scene.group
        for i, caption in enumerate(captions_for(scene)):
            entries.append(ManifestEntry(
                video=video_relpath(scene), caption=caption, split=scene.split,
                id=f"{scene.video_id}-{i}", extra=dict(extra),
            ))
    return entries


def render_scene_file(scene: Scene, path: Path, render: RenderConfig) -> int:
    """Render and encode one scene to `path`; returns the file size in bytes."""
    from tvr.io.writer import write_video
    from tvr.synth.render import render_frames
    from tvr.synth.sound import render_audio

    frames = render_frames(scene, render.size, render.seconds, render.fps)
    audio = render_audio(scene, render.seconds, render.audio_rate_hz) if scene.audio_stream else None
    write_video(path, frames, render.fps, codec=scene.video_codec, audio=audio, audio_rate_hz=render.audio_rate_hz)
    return path.stat().st_size


def _render_task(task: tuple[Scene, str, RenderConfig]) -> str:
    scene, path, render = task
    render_scene_file(scene, Path(path), render)
    return scene.video_id


def generate(
    out_dir: str | Path,
    world_config: WorldConfig,
    render: RenderConfig = RenderConfig(),
    *,
    workers: int | None = None,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a complete synthetic collection into `out_dir` (see the module docstring)."""
    out_dir = Path(out_dir)
    check_limits(world_config, render)
    check_out_dir(out_dir, force)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))

    start = time.perf_counter()
    world = sample_world(world_config)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    tasks = [(s, str(out_dir / video_relpath(s)), render) for s in world.scenes]
    _run_tasks(tasks, workers, on_progress)
    entries = manifest_entries(world.scenes)
    _write_outputs(out_dir, world, render, entries)
    elapsed = time.perf_counter() - start

    splits = {
        name: {
            "videos": sum(1 for s in world.scenes if s.split == name),
            "captions": sum(1 for e in entries if e.split == name),
        }
        for name in ("train", "val", "test")
    }
    return SynthSummary(
        out_dir=str(out_dir), videos=len(world.scenes), captions=len(entries), splits=splits,
        heldout_pairs=[list(p) for p in world.heldout], workers=workers,
        elapsed_s=round(elapsed, 3), videos_per_s=round(len(world.scenes) / max(elapsed, 1e-9), 2),
    )


def _run_tasks(tasks: list, workers: int, on_progress: Callable[[int, int], None] | None) -> None:
    done = 0
    if workers == 1 or len(tasks) < 2:
        for task in tasks:
            _render_task(task)
            done += 1
            if on_progress:
                on_progress(done, len(tasks))
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads, which fork does not copy safely
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        for _ in pool.imap_unordered(_render_task, tasks, chunksize=4):
            done += 1
            if on_progress:
                on_progress(done, len(tasks))


def _write_outputs(out_dir: Path, world: World, render: RenderConfig, entries: list[ManifestEntry]) -> None:
    scenes_text = "".join(json.dumps(s.to_json(), sort_keys=True) + "\n" for s in world.scenes)
    atomic_write_text(out_dir / "scenes.jsonl", scenes_text)
    description = world.describe()
    description["render"] = asdict(render)
    description["world_config"] = asdict(world.config)
    atomic_write_json(out_dir / "world.json", description)
    for name in ("train", "val", "test"):
        write_manifest(out_dir / f"{name}.jsonl", [e for e in entries if e.split == name])
    twin = [replace(e, caption=paraphrase(e.caption), extra={**e.extra, "paraphrase_of": e.caption})
            for e in entries if e.split == "test"]
    write_manifest(out_dir / PARAPHRASE_MANIFEST, twin)
    write_manifest(out_dir / "all.jsonl", entries)
