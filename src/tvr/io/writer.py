"""Write frames (and optionally a mono audio track) to a real encoded video file with PyAV.

Used by the synthetic world and by tests that need genuine containers. The file appears atomically:
it is encoded under a temporary name in the same folder (same extension, so the muxer is picked the
same way) and renamed onto `path` only when complete.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from tvr.atomic import fsync_dir

AUDIO_RATE_HZ = 16_000


@dataclass(frozen=True)
class Format:
    """A container with its default video and audio encoders."""

    container: str  # FFmpeg muxer name
    video_codec: str
    audio_codec: str


# Extension → container and default codecs. Opus is the WebM-native audio codec; libopus accepts 16 kHz.
FORMATS: dict[str, Format] = {
    ".mp4": Format("mp4", "libx264", "aac"),
    ".m4v": Format("mp4", "libx264", "aac"),
    ".mov": Format("mov", "libx264", "aac"),
    ".mkv": Format("matroska", "libx264", "aac"),
    ".webm": Format("webm", "libvpx-vp9", "libopus"),
}
_CONTAINER_ALIASES = {"mkv": "matroska"}
_LOSSLESS_VIDEO = {"ffv1"}


def format_for(path: str | Path, container: str | None = None) -> Format:
    """The container and default codecs for `path` (from its extension, or `container` if given)."""
    ext = Path(path).suffix.lower()
    if container is not None:
        name = _CONTAINER_ALIASES.get(container, container)
        base = FORMATS.get(ext) or next((f for f in FORMATS.values() if f.container == name), None)
        if base is None:
            raise ValueError(f"{path}: no default codecs for container {container!r}; pass codec explicitly")
        return Format(name, base.video_codec, base.audio_codec)
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown video extension {ext!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[ext]


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    container: str | None = None,
    codec: str | None = None,
    audio: np.ndarray | None = None,
    audio_rate_hz: int = AUDIO_RATE_HZ,
    audio_codec: str | None = None,
    rotation_deg: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    threads: int = 1,
) -> Path:
    """Encode `frames` [T, H, W, 3] uint8 RGB at `fps` into `path`, atomically; returns `path`.

    `audio` is a mono float32 signal in [-1, 1] at `audio_rate_hz` (None: no audio stream).
    `rotation_deg` stores a display rotation (counter-clockwise degrees) in the container metadata;
    the pixels themselves are not rotated. `threads=1` (with x264's lookahead kept on the calling
    thread) keeps the output byte-identical across runs, also on a loaded machine.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    fmt = format_for(path, container)
    vcodec = codec or fmt.video_codec
    pix_fmt = "yuv420p"
    height, width = frames.shape[1:3]
    if vcodec not in _LOSSLESS_VIDEO and (height % 2 or width % 2):
        raise ValueError(f"{vcodec} with yuv420p needs even frame sizes, got {width}x{height}")
    if audio is not None:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono [S], got shape {audio.shape}")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        with av.open(str(tmp), mode="w", format=fmt.container) as out:
            # bitexact: Matroska otherwise writes random segment/track UIDs, so reruns would differ
            out.flags |= av.container.Flags.bitexact.value
            rate = Fraction(fps).limit_denominator(1001)
            vstream = out.add_stream(vcodec, rate=rate)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
            vstream.codec_context.time_base = 1 / rate
            vstream.codec_context.thread_count = threads
            vstream.codec_context.options = _video_options(vcodec, crf, preset)
            if rotation_deg:
                vstream.set_display_rotation(rotation_deg)
            astream = None
            if audio is not None:
                astream = out.add_stream(audio_codec or fmt.audio_codec, rate=audio_rate_hz)
                astream.layout = "mono"
                astream.codec_context.options = _audio_options(astream.codec_context.name)
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                frame.time_base = vstream.codec_context.time_base
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
            if astream is not None and audio is not None:
                _encode_audio(av, out, astream, audio, audio_rate_hz)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty")


def _video_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    if codec == "libx264":
        # mbtree=0: x264's macroblock-tree pass (float SIMD over the lookahead) gave the one
        # source of run-to-run differences seen here, for the same frames on one thread; every
        # other x264 stage reproduced byte for byte (see tests/io/test_writer_determinism.py)
        return {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
    if codec == "libvpx-vp9":
        # constant-quality mode; speed 8 is the fastest realtime setting and plenty for small frames
        return {"crf": str(crf + 10), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return {}


def _audio_options(codec: str) -> dict[str, str]:
    # FFmpeg's default AAC coder (two-loop search) costs ~3x the time of "fast" for no gain here
    return {"aac_coder": "fast"} if codec == "aac" else {}


def _encode_audio(av, out, stream, audio: np.ndarray, rate_hz: int) -> None:
    """Feed the whole signal once; PyAV re-chunks it to the encoder's frame size and sample format."""
    frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
    frame.sample_rate = rate_hz
    frame.pts = 0
    frame.time_base = Fraction(1, rate_hz)
    out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
