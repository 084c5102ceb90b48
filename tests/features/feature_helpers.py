"""Test helpers for the feature store: tiny videos, a transparent fake encoder and decode functions.

The decode functions are module-level so spawned decode workers can import them by reference.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.encoders.base import VideoEncoder
from tvr.io.decoded import DecodedVideo, DecodeSpec

HERE = Path(__file__).resolve().parent
FPS = 8


def frame_colors(seed: int, n_frames: int) -> np.ndarray:
    """[n_frames, 3] uint8 flat colours of a video (flat frames survive lossy coding almost exactly)."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 216, size=(n_frames, 3), dtype=np.uint8)


def make_video(path: Path, seed: int, n_frames: int = 8, size: int = 32) -> Path:
    """A real MPEG-4 file of flat-coloured frames at FPS frames per second."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for rgb in frame_colors(seed, n_frames):
            img = np.broadcast_to(rgb, (size, size, 3)).copy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def simple_decode(path: Path, spec: DecodeSpec, start_s: float | None, end_s: float | None) -> DecodedVideo:
    """Decode every frame with PyAV and keep `spec.num_frames` uniformly spaced ones of [start, end]."""
    import av

    with av.open(str(path)) as container:
        frames, times = [], []
        for frame in container.decode(video=0):
            t = float(frame.time)
            if (start_s is None or t >= start_s - 1e-6) and (end_s is None or t < end_s - 1e-6):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
    if not frames:
        raise ValueError(f"{path}: no frames")
    n = spec.num_frames or len(frames)
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    lo = times[0] if start_s is None else start_s
    return DecodedVideo(frames=np.stack([frames[i] for i in idx]), timestamps_s=np.asarray(times)[idx],
                        duration_s=len(frames) / FPS if start_s is None else (times[-1] + 1 / FPS - lo),
                        start_s=lo)


def hang_or_decode(path: Path, spec: DecodeSpec, start_s: float | None, end_s: float | None) -> DecodedVideo:
    """Hangs forever on files named *hang*, as a stuck native decoder would."""
    if "hang" in path.name:
        while True:
            time.sleep(3600)
    return simple_decode(path, spec, start_s, end_s)


def slow_decode(path: Path, spec: DecodeSpec, start_s: float | None, end_s: float | None) -> DecodedVideo:
    """`tvr.io.video.decode` after half a second: a run slow enough to be killed part-way."""
    from tvr.io.video import decode

    time.sleep(0.5)
    return decode(path, spec, start_s, end_s)


def crash_or_decode(path: Path, spec: DecodeSpec, start_s: float | None, end_s: float | None) -> DecodedVideo:
    """Dies by SIGSEGV on files named *crash*, as a crashing native decoder would."""
    if "crash" in path.name:
        os.kill(os.getpid(), signal.SIGSEGV)
    return simple_decode(path, spec, start_s, end_s)


@dataclass(frozen=True)
class MeanColorConfig:
    version: str = "1"
    num_frames: int = 4
    delay_s: float = 0.0  # sleep per batch, so a test can kill a run midway
    fail_on: str = ""  # first-frame colour ("r,g,b") of a video the encoder must reject


class MeanColorEncoder(VideoEncoder):
    """Transparent 'encoder': per-frame mean colour, so stored features can be checked by hand."""

    name = "test-mean-color"
    config_cls = MeanColorConfig

    def __init__(self, config: MeanColorConfig = MeanColorConfig()) -> None:
        self._version = config.version
        self.num_frames = config.num_frames
        self.delay_s = config.delay_s
        self.fail_on = config.fail_on
        self.batch_sizes: list[int] = []

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(num_frames=self.num_frames)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        self.batch_sizes.append(len(videos))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for v in videos:
            if self.fail_on and self.fail_on == _marker(v):
                raise RuntimeError("encoder rejects this video")
            out.append({
                "frame_mean": v.frames.astype(np.float64).mean(axis=(1, 2)).astype(np.float32),  # [T, 3]
                "timestamps": v.timestamps_s.astype(np.float32),
            })
        return out


def _marker(v: DecodedVideo) -> str:
    """First frame's colour as text: lets a test make the encoder fail on one chosen video."""
    return ",".join(str(int(round(c))) for c in v.frames[0].reshape(-1, 3).mean(axis=0))


def reference_features(path: Path, num_frames: int = 4) -> dict[str, np.ndarray]:
    """The same features computed directly, in float64, without store or workers."""
    v = simple_decode(path, DecodeSpec(num_frames=num_frames), None, None)
    return {"frame_mean": v.frames.astype(np.float64).mean(axis=(1, 2)), "timestamps": v.timestamps_s}


def register_test_encoder() -> None:
    """Make `--encoder test-mean-color` known to the CLI in this process."""
    from tvr.encoders.registry import VIDEO_ENCODERS

    VIDEO_ENCODERS.add(MeanColorEncoder.name, MeanColorEncoder)
