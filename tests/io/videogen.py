"""Test-only generators of real encoded media files (PyAV) whose frame times and contents are known.

Every frame shows its index in binary as black/white 8×8 blocks (most significant bit first, one
block per 8 pixels of width) across the top 8 pixel rows, so
a test can read back *which* frame a decoder returned, even after lossy compression or rotation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BLOCK = 8  # pixels per bit block


def frame_image(index: int, width: int, height: int, noise: bool = False) -> np.ndarray:
    """RGB frame with `index` (< 2**(width // 8)) as bit blocks on the top rows; the rest a gradient."""
    n_bits = width // BLOCK
    assert index < 2**n_bits, f"a {width}-pixel-wide frame shows indices below {2**n_bits}"
    img = np.zeros((height, width, 3), np.uint8)
    ys = np.linspace(40, 90, height, dtype=np.float32)[:, None]
    img[..., 2] = ys.astype(np.uint8)  # a faint blue gradient so the encoder has something to code
    if noise:  # incompressible content below the bits: packets as large as a real video's
        rng = np.random.default_rng(index)
        img[2 * BLOCK :] = rng.integers(0, 256, img[2 * BLOCK :].shape, dtype=np.uint8)
    for bit in range(n_bits):
        if (index >> (n_bits - 1 - bit)) & 1:
            img[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255
    return img


def read_index(rgb: np.ndarray) -> int:
    """Inverse of `frame_image`: the index shown by a decoded (unrotated, unscaled) frame."""
    value = 0
    for bit in range(rgb.shape[1] // BLOCK):
        block = rgb[1 : BLOCK - 1, bit * BLOCK + 1 : (bit + 1) * BLOCK - 1].astype(np.float32)
        value = (value << 1) | int(block.mean() > 128)
    return value


@dataclass(frozen=True)
class Written:
    """A generated file and what was put in it."""

    path: Path
    frame_times_s: tuple[float, ...]  # presentation time of frame i (= its index)
    width: int
    height: int
    audio_hz: float | None  # frequency of the sine tone in the audio track, if any


def write_video(
    path: str | Path,
    *,
    codec: str = "libx264",
    fmt: str | None = None,
    n_frames: int = 30,
    fps: int = 10,
    times_s: Sequence[float] | None = None,  # variable frame rate: explicit frame times (ms precision)
    width: int = 64,
    height: int = 48,
    pix_fmt: str = "yuv420p",
    rotation_cw: int | None = None,  # display rotation (clockwise degrees) stored as a display matrix
    gop: int | None = None,
    b_frames: bool = True,
    audio: tuple[str, float] | None = None,  # (codec, tone frequency Hz)
    audio_rate: int = 48_000,
    options: dict[str, str] | None = None,
    noise: bool = False,
) -> Written:
    """Encode `n_frames` index frames; returns the exact frame times written."""
    path = Path(path)
    if times_s is None:
        times = [i / fps for i in range(n_frames)]
        time_base = Fraction(1, fps)
        pts = list(range(n_frames))
    else:
        times = [round(t, 3) for t in times_s]
        n_frames = len(times)
        time_base = Fraction(1, 1000)
        pts = [int(round(t * 1000)) for t in times]
    out = av.open(str(path), mode="w", format=fmt, options=options or {})
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.codec_context.time_base = time_base
    if gop is not None:
        stream.codec_context.gop_size = gop
    if codec == "libx264":
        params = ["bframes=0"] if not b_frames else []
        if gop is not None:
            params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if params:
            stream.codec_context.options = {"x264-params": ":".join(params)}
    if rotation_cw is not None:
        stream.set_display_rotation(-rotation_cw)  # PyAV takes counter-clockwise degrees
    astream = None
    if audio is not None:
        acodec, _ = audio
        astream = out.add_stream(acodec, rate=audio_rate)
        astream.layout = "stereo"
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(frame_image(i, width, height, noise), format="rgb24")
        frame.pts, frame.time_base = pts[i], time_base
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    if astream is not None:
        assert audio is not None
        _write_tone(out, astream, audio[1], audio_rate, seconds=times[-1] + (1 / fps))
    out.close()
    return Written(path, tuple(times), width, height, None if audio is None else audio[1])


def _write_tone(out, astream, hz: float, rate: int, seconds: float) -> None:
    """A stereo sine tone (amplitude 0.5) of `seconds`, in the encoder's frame size."""
    ctx = astream.codec_context
    chunk = ctx.frame_size or 1024
    total = int(round(seconds * rate))
    fmt = ctx.format.name if ctx.format is not None else "fltp"
    pos = 0
    while pos < total:
        n = min(chunk, total - pos) if ctx.frame_size == 0 else chunk
        t = (pos + np.arange(n)) / rate
        wave = (0.5 * np.sin(2 * math.pi * hz * t)).astype(np.float32)
        planar = np.stack([wave, wave])
        if fmt == "s16":
            frame = av.AudioFrame.from_ndarray((planar.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo")
        elif fmt == "flt":
            frame = av.AudioFrame.from_ndarray(planar.T.reshape(1, -1), format="flt", layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = pos
        frame.time_base = Fraction(1, rate)
        for packet in astream.encode(frame):
            out.mux(packet)
        pos += n
    for packet in astream.encode():
        out.mux(packet)


def write_audio_only(path: str | Path, hz: float = 440.0, seconds: float = 1.0, codec: str = "aac") -> Path:
    """An audio-only file (e.g. .m4a), for the 'no video stream' error."""
    path = Path(path)
    out = av.open(str(path), mode="w")
    astream = out.add_stream(codec, rate=48_000)
    astream.layout = "stereo"
    _write_tone(out, astream, hz, 48_000, seconds)
    out.close()
    return path


def truncate(src: Path, dst: Path, keep: float) -> Path:
    """Copy the first `keep` fraction of `src`'s bytes to `dst` (a download cut short)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def expected_pick(frame_times_s: Sequence[float], target_s: float) -> int:
    """Brute force: index of the frame on screen at `target_s` (last with time <= target; else 0)."""
    best = 0
    for i, t in enumerate(frame_times_s):
        if t <= target_s + 1e-6:
            best = i
    return best
