"""Test helpers for the index: tiny real videos with captions and tiny random-init checkpoints.

Videos are flat-coloured MPEG-4 files whose colour changes every frame, so different frames of one
video embed differently and the best moment is a real argmax, not a tie.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FPS = 4
N_FRAMES = 8  # 2 seconds
SIZE = 32
WORDS = ("red", "green", "blue", "small", "large", "circle", "square", "moving", "left", "right", "then", "a")

TINY = {
    "num_frames": 4, "image_size": 32,
    "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1, "vision_heads": 2,
                 "text_width": 16, "text_layers": 1, "text_heads": 2},
}


def make_video(path: Path, seed: int) -> Path:
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for _ in range(N_FRAMES):
            img = np.empty((SIZE, SIZE, 3), np.uint8)
            img[:] = rng.integers(30, 226, 3, dtype=np.uint8)
            img[: SIZE // 2, : SIZE // 2] = rng.integers(30, 226, 3, dtype=np.uint8)  # a square of another colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7))))


def make_collection(root: Path, n_videos: int = 6, seed: int = 0) -> Path:
    """`root/videos/vNN.mp4` + `root/all.jsonl` (2 captions per video; the first half 'train')."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_videos):
        make_video(root / "videos" / f"v{i:02d}.mp4", seed * 1000 + i)
        split = "train" if i < n_videos // 2 else "test"
        for _ in range(2):
            lines.append({"video": f"videos/v{i:02d}.mp4", "caption": caption(rng), "split": split})
    manifest = root / "all.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return manifest


def make_checkpoint(run_dir: Path, method: str = "clip4clip-meanp", *, seed: int = 0,
                    manifest: Path | None = None, overrides: dict | None = None) -> Path:
    """A random-init tiny model saved with the trainer's checkpoint code (vocabulary = WORDS)."""
    import torch

    from tvr.models.registry import build, lookup, make_config
    from tvr.train.checkpoint import save_training_checkpoint

    cls, _ = lookup(method)
    cfg = cls.adapt_config(make_config(method, {**TINY, **(overrides or {})}), [" ".join(WORDS)])
    torch.manual_seed(seed)
    model = build(method, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    extra = {"training": {"preset": "test", "train": {}, "manifest": str(manifest)}} if manifest else {}
    save_training_checkpoint(run_dir, model, opt, {"epoch": 1, "step": 0, "method": method}, extra)
    return run_dir


def register_maxframe() -> None:
    """Register "test-maxframe": a model that is NOT an inner product (the best frame's cosine scores
    the video), so search takes its re-scoring paths."""
    from dataclasses import dataclass

    from tvr.models.clip4clip import Clip4ClipConfig, Clip4ClipMeanP
    from tvr.models.registry import names, register

    if "test-maxframe" in names():
        return

    @dataclass(frozen=True)
    class MaxFrameConfig(Clip4ClipConfig):
        pass

    class MaxFrame(Clip4ClipMeanP):
        inner_product = False

        def similarity(self, text_emb, video_emb):
            return self.frame_similarity(text_emb, video_emb).amax(-1)

    register("test-maxframe", MaxFrameConfig)(MaxFrame)


def one_line_error(result, *words) -> None:
    """`result` (a `run_cli` result) failed with exit 2 and one "error: " line holding every word."""
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]
