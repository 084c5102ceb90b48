"""Ingest benchmark: sampled decoding (`tvr.io.video.decode`) vs a naive decode-every-frame loop.

Both read the same files and return the same 12 frames resized to 224×224. The naive baseline
decodes every frame in order and converts each one to an RGB array (what a loader does when it
reads a whole video and then subsamples), keeping only the sampled frames so memory stays flat.
Each (file set, method) runs in a fresh subprocess, so its peak RSS (resource.getrusage) is its own.

    python bench/ingest.py [--out bench/results/ingest.json] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REALDATA_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "clips"


# ----------------------------------------------------------------------------- inputs


def _pattern(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth, textured picture that costs the encoder (and decoder) like a real scene."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08), rng.uniform(0, 6.28)
        img[..., c] = 127 + 60 * np.sin(fx * x + ph) * np.cos(fy * y) + rng.normal(0, 12, (height, width))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_h264(path: Path, seconds: float, fps: int, width: int, height: int, gop: int, seed: int) -> None:
    """A moving scene in MP4/H.264 (B-frames on, fixed GOP) with an AAC track like a phone video."""
    import av

    base = _pattern(height * 2, width * 2, seed)
    out = av.open(str(path), mode="w")
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.options = {"preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    n = int(seconds * fps)
    for i in range(n):
        dy, dx = (i * 2) % height, (i * 3) % width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[dy : dy + height, dx : dx + width]), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def prepare(workdir: Path, short_clips: int, long_seconds: float, use_realdata: bool) -> dict[str, list[str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[str]] = {}
    short = []
    for i in range(short_clips):  # MSR-VTT-like: 10 s, 320x240, 30 fps, x264's usual long GOP
        path = workdir / f"short_{i:02d}.mp4"
        if not path.exists():
            write_h264(path, 10.0, 30, 320, 240, gop=250, seed=i)
        short.append(str(path))
    sets["short_synthetic_10s_320x240"] = short
    if use_realdata and REALDATA_CLIPS.is_dir():
        real = sorted(str(p) for p in REALDATA_CLIPS.iterdir() if p.suffix in (".mp4", ".gif"))
        if real:
            sets["short_real_clips"] = real
    long_path = workdir / f"long_{int(long_seconds)}s.mp4"
    if not long_path.exists():  # 2-minute 640x360 at 30 fps, a keyframe every 2 s
        write_h264(long_path, long_seconds, 30, 640, 360, gop=60, seed=99)
    sets[f"long_{int(long_seconds)}s_640x360"] = [str(long_path)]
    return sets


# ----------------------------------------------------------------------------- methods


def run_sampled(paths: list[str], frames: int, size: int) -> dict:
    from tvr.io.decoded import DecodeSpec
    from tvr.io.video import decode

    spec = DecodeSpec(num_frames=frames, size=size)
    out_frames = 0
    t0 = time.perf_counter()
    for p in paths:
        out_frames += decode(p, spec).frames.shape[0]
    return {"seconds": time.perf_counter() - t0, "output_frames": out_frames}


def run_naive(paths: list[str], frames: int, size: int) -> dict:
    import av
    from PIL import Image

    from tvr.io.video import probe

    out_frames = decoded = 0
    t0 = time.perf_counter()
    for p in paths:
        total = probe(p).frame_count
        wanted = {min(total - 1, int((i + 0.5) * total / frames)) for i in range(frames)}
        picked = []
        with av.open(p) as container:
            for i, frame in enumerate(container.decode(video=0)):
                rgb = frame.to_ndarray(format="rgb24")  # every frame converted, as a naive loader does
                decoded += 1
                if i in wanted:
                    img = Image.fromarray(rgb)
                    scale = size / min(img.size)
                    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
                    left, top = (img.width - size) // 2, (img.height - size) // 2
                    picked.append(np.asarray(img.crop((left, top, left + size, top + size))))
        out_frames += frames  # the baseline repeats frames where a video has fewer
    return {"seconds": time.perf_counter() - t0, "output_frames": out_frames, "decoded_frames": decoded}


def worker(method: str, paths: list[str], frames: int, size: int) -> dict:
    result = (run_sampled if method == "sampled" else run_naive)(paths, frames, size)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return result


def measure(method: str, paths: list[str], frames: int, size: int) -> dict:
    """Run one method in a fresh interpreter so its peak memory is not mixed with the other's."""
    args = [sys.executable, __file__, "--worker", method, "--frames", str(frames), "--size", str(size), "--paths", *paths]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    n = len(paths)
    r["videos_per_s"] = n / r["seconds"]
    r["frames_per_s"] = r["output_frames"] / r["seconds"]
    if "decoded_frames" in r:
        r["decoded_frames_per_s"] = r["decoded_frames"] / r["seconds"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ingest.json")
    ap.add_argument("--workdir", type=Path, default=None, help="where test videos are generated (kept)")
    ap.add_argument("--short-clips", type=int, default=8)
    ap.add_argument("--long-seconds", type=float, default=120.0)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-realdata", action="store_true")
    ap.add_argument("--worker", choices=["sampled", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.paths, args.frames, args.size)))
        return

    with tempfile.TemporaryDirectory(prefix="tvr-ingest-") as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        sets = prepare(workdir, args.short_clips, args.long_seconds, not args.no_realdata)
        gen_s = time.perf_counter() - t0
        results = {}
        for name, paths in sets.items():
            sampled = measure("sampled", paths, args.frames, args.size)
            naive = measure("naive", paths, args.frames, args.size)
            results[name] = {
                "videos": len(paths),
                "sampled": sampled,
                "naive_every_frame": naive,
                "speedup_videos_per_s": sampled["videos_per_s"] / naive["videos_per_s"],
            }
            print(f"{name}: sampled {sampled['videos_per_s']:.2f} videos/s, naive {naive['videos_per_s']:.2f} "
                  f"videos/s, ratio {results[name]['speedup_videos_per_s']:.1f}x", file=sys.stderr)
    import av

    doc = {
        "benchmark": "ingest",
        "frames_per_video": args.frames,
        "size": args.size,
        "generation_seconds": gen_s,
        "results": results,
        "environment": {
            "python": platform.python_version(),
            "pyav": av.__version__,
            "cpus": os.cpu_count(),
            "loadavg_1min": os.getloadavg()[0],
            "machine": platform.machine(),
        },
    }
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tvr.atomic import atomic_write_json

    atomic_write_json(args.out, doc)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
