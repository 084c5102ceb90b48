"""Decode sampled frames from any video file FFmpeg can read (PyAV), robustly and without waste.

Sampling convention (uniform N): the clip [a, b] is cut into N equal segments and frame i is the
frame *on screen* at the centre of segment i, t_i = a + (i + 0.5)(b - a)/N, i.e. the last frame
whose timestamp is <= t_i. With `fps`, t_k = a + k/fps for t_k < b (at most `max_frames`; above
that the clip is sampled uniformly with `max_frames` frames instead, so it is still covered).
The returned timestamps are the chosen frames' own timestamps in seconds from the start of the
file, so a short video gives repeated frames (and repeated timestamps) rather than fewer of them.

Where the container has a keyframe index (MP4/MOV, AVI, MKV cues) the decoder seeks to the last
keyframe before a target whenever that keyframe lies beyond the current position; otherwise (GIF,
streams without an index) it decodes sequentially but converts only the chosen frames to RGB.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from tvr.errors import TvrError
from tvr.io.decoded import DecodedVideo, DecodeSpec

# Corrupt packets a decoder may skip before the file counts as unreadable (real files have a few).
MAX_BAD_PACKETS = 32
# A stream that ends this much before a target the file declares is reported as truncated.
TRUNCATION_SLACK_S = 1.0


class DecodeError(TvrError):
    """A video that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a file declares about its video stream (plus whether it has audio)."""

    duration_s: float  # duration of the video stream
    fps: float  # average frame rate (an estimate for variable-frame-rate files)
    width: int  # displayed width, i.e. after rotation
    height: int  # displayed height, i.e. after rotation
    rotation_deg: int  # clockwise rotation applied for display: 0, 90, 180 or 270
    has_audio: bool
    codec: str  # e.g. "h264", "vp9", "mjpeg", "gif"
    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    frame_count: int  # declared count, else duration × fps (an estimate)
    start_s: float = 0.0  # first video timestamp, seconds from the start of the file


# ----------------------------------------------------------------------------- opening


def open_input(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open a media file for reading, turning every failure into a DecodeError naming it."""
    p = Path(path)
    if not p.exists():
        raise DecodeError(p, "file not found")
    if not p.is_file():
        raise DecodeError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise DecodeError(p, "empty file (0 bytes)")
    try:
        return av.open(str(p), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise DecodeError(p, f"not a readable media file or corrupt ({_reason(e)})") from None
    except (OSError, UnicodeError) as e:
        raise DecodeError(p, f"unreadable ({e})") from None


def file_origin_s(container: av.container.InputContainer) -> float:
    """Time of the start of the file on the streams' clocks (0 for most MP4s, ~1.4 s for MPEG-TS)."""
    start = container.start_time
    return 0.0 if start is None else start / av.time_base


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return str(text).strip() or type(e).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise DecodeError(path, f"no video stream (streams: {', '.join(kinds)}; audio-only file?)")
    return container.streams.video[0]


# ----------------------------------------------------------------------------- frames


@dataclass
class _Frame:
    frame: av.VideoFrame
    time_s: float  # seconds from the start of the file


class _FrameCursor:
    """Frames of one video stream in presentation order, with seeking; skips a few bad packets."""

    def __init__(self, container: av.container.InputContainer, stream, path: Path, origin_s: float, fps: float):
        self.container = container
        self.stream = stream
        self.path = path
        self.origin_s = origin_s
        self.frame_interval_s = 1.0 / fps if fps > 0 else 0.04
        self.bad_packets = 0
        self._frames: Iterator[_Frame] = self._iterate()

    def _iterate(self) -> Iterator[_Frame]:
        last_time: float | None = None
        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = self.stream.decode(packet)
                except av.error.InvalidDataError:
                    self.bad_packets += 1
                    if self.bad_packets > MAX_BAD_PACKETS:
                        raise DecodeError(self.path, f"corrupt: more than {MAX_BAD_PACKETS} undecodable packets") from None
                    continue
                for frame in decoded:
                    if frame.pts is not None:
                        t = float(frame.pts * frame.time_base) - self.origin_s
                    else:  # no timestamp: assume constant rate after the previous frame
                        t = 0.0 if last_time is None else last_time + self.frame_interval_s
                    last_time = t
                    yield _Frame(frame, t)
        except av.error.FFmpegError as e:
            raise DecodeError(self.path, f"corrupt or truncated ({_reason(e)})") from None

    def next(self) -> _Frame | None:
        """The next frame, or None at the end of the stream."""
        return next(self._frames, None)

    def close(self) -> None:
        """Finish the frame generator now. It refers back to this cursor, so without this the cursor,
        its container and the decoder's threads would live on until the cyclic garbage collector ran."""
        self._frames.close()

    def seek(self, time_s: float) -> None:
        """Continue from the keyframe at or before `time_s` (seconds from the start of the file)."""
        # round, not floor: a keyframe time from the index must map back to its own timestamp
        pts = int(round((time_s + self.origin_s) / self.stream.time_base))
        try:
            self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise _SeekFailed(str(e)) from None
        self._frames = self._iterate()


class _SeekFailed(Exception):
    """Seeking gave no usable position; the caller falls back to sequential decoding."""


def _keyframe_times_s(stream, origin_s: float) -> list[float]:
    """Sorted keyframe times from the container index ([] when there is no usable index)."""
    try:
        entries = stream.index_entries
        times = [float(e.timestamp * stream.time_base) - origin_s for e in entries if e.is_keyframe]
    except (AttributeError, av.error.FFmpegError, TypeError):
        return []
    return sorted(times) if len(times) >= 2 else []


def _pick_frames(cursor: _FrameCursor, targets_s: Sequence[float], keyframes_s: list[float]) -> list[_Frame]:
    """For each target (ascending), the last frame whose time <= target (the first frame if none).

    Seeks only when the index has a keyframe beyond the current position and at or before the
    target. A seek that lands after its target steps back one keyframe at a time; when none is
    left it raises _SeekFailed so the caller decodes sequentially instead.
    """
    eps = 1e-6
    picks: list[_Frame] = []
    prev: _Frame | None = None  # last frame with time <= the current target
    ahead: _Frame | None = None  # first frame beyond the target, already pulled
    at_eof = False
    seeked = False

    def advance(t: float) -> None:
        nonlocal prev, ahead, at_eof
        while not at_eof:
            if ahead is None:
                ahead = cursor.next()
                if ahead is None:
                    at_eof = True
                    return
            if ahead.time_s > t + eps:
                return
            prev, ahead = ahead, None

    for t in targets_s:
        k = bisect.bisect_right(keyframes_s, t + eps) - 1
        if k >= 0:
            position = ahead.time_s if ahead is not None else (prev.time_s if prev is not None else None)
            if (k > 0 and position is None) or (position is not None and keyframes_s[k] > position + eps):
                # Seek to the target itself: FFmpeg then lands on the last keyframe *presented* at or
                # before it (index times are decode times, which B-frames put before presentation).
                seek_to = t
                while True:
                    cursor.seek(seek_to)
                    prev, ahead, at_eof, seeked = None, None, False, True
                    advance(t)
                    if prev is not None:
                        break
                    if k <= 0:
                        raise _SeekFailed(f"no frame at or before {t:.3f}s after seeking")
                    k -= 1
                    seek_to = keyframes_s[k]
        advance(t)
        if prev is None:
            if ahead is None:
                if seeked:
                    raise _SeekFailed("no frames after seeking")
                raise DecodeError(cursor.path, "no decodable video frames (corrupt or truncated)")
            picks.append(ahead)  # the target precedes the first frame of the stream
            continue
        if at_eof and t - prev.time_s > max(TRUNCATION_SLACK_S, 3 * cursor.frame_interval_s):
            if seeked:
                raise _SeekFailed("stream ended early after seeking")
            raise DecodeError(
                cursor.path,
                f"truncated: video frames end at {prev.time_s:.2f}s but the file declares frames up to "
                f"at least {t:.2f}s",
            )
        picks.append(prev)
    return picks


# ----------------------------------------------------------------------------- geometry


def rotation_from_frame(frame: av.VideoFrame) -> int:
    """Clockwise display rotation (0/90/180/270) from the frame's display matrix.

    FFmpeg reports the matrix angle counter-clockwise; players rotate by its negation.
    """
    try:
        ccw = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round(-float(ccw) / 90.0)) % 4 * 90


@dataclass(frozen=True)
class _Geometry:
    """How a decoded frame becomes an output array: scale (swscale), rotate, crop."""

    scaled_w: int
    scaled_h: int
    rotation_deg: int
    crop: int | None  # square side after rotation, or None

    @staticmethod
    def make(width: int, height: int, rotation_deg: int, size: int | None, mode: str) -> _Geometry:
        if size is None:
            return _Geometry(width, height, rotation_deg, None)
        if mode == "crop":  # short side -> size, then centre-crop size x size
            scale = size / min(width, height)
        else:  # "fit": long side -> size, keep aspect ratio
            scale = size / max(width, height)
        w = max(1, round(width * scale))
        h = max(1, round(height * scale))
        if mode == "crop":
            w, h = (size, max(size, h)) if width <= height else (max(size, w), size)
        return _Geometry(w, h, rotation_deg, size if mode == "crop" else None)

    def apply(self, frame: av.VideoFrame) -> np.ndarray:
        if (frame.width, frame.height) == (self.scaled_w, self.scaled_h):
            rgb = frame.to_ndarray(format="rgb24")
        else:
            rgb = frame.reformat(
                width=self.scaled_w, height=self.scaled_h, format="rgb24", interpolation="BICUBIC"
            ).to_ndarray()
        if self.rotation_deg:
            rgb = np.rot90(rgb, k=-self.rotation_deg // 90)  # negative k: clockwise
        if self.crop is not None:
            h, w = rgb.shape[:2]
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            rgb = rgb[top : top + self.crop, left : left + self.crop]
        return np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------- probing


def _declared_duration_s(container, stream, origin_s: float) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        start = 0.0 if stream.start_time is None else float(stream.start_time * stream.time_base) - origin_s
        return max(0.0, container.duration / av.time_base - start)
    return None


def _scan_duration_s(container, stream, path: Path, origin_s: float) -> tuple[float, int]:
    """Duration and packet count by reading packets (no decoding), for files that declare neither."""
    end = 0.0
    first: float | None = None
    count = 0
    try:
        container.seek(0)
    except av.error.FFmpegError:
        pass
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            count += 1
            t = float(packet.pts * stream.time_base) - origin_s
            first = t if first is None else min(first, t)
            end = max(end, t + float((packet.duration or 0) * stream.time_base))
    except av.error.FFmpegError as e:
        raise DecodeError(path, f"corrupt or truncated ({_reason(e)})") from None
    return end - (first or 0.0), count


def _probe_open(container, path: Path) -> VideoInfo:
    stream = _video_stream(container, path)
    origin_s = file_origin_s(container)
    start_s = 0.0 if stream.start_time is None else float(stream.start_time * stream.time_base) - origin_s
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = _declared_duration_s(container, stream, origin_s)
    frames = int(stream.frames or 0)
    if not duration:
        duration, packets = _scan_duration_s(container, stream, path, origin_s)
        frames = frames or packets
    if fps <= 0 or not math.isfinite(fps):
        fps = frames / duration if duration > 0 and frames else 25.0
    if not frames:
        frames = max(1, round(duration * fps))
    # The display matrix reaches us on decoded frames, so decode the first one (also checks decodability).
    try:
        container.seek(0)
    except av.error.FFmpegError:
        pass
    cursor = _FrameCursor(container, stream, path, origin_s, fps)
    try:
        first = cursor.next()
    finally:
        cursor.close()
    if first is None:
        raise DecodeError(path, "no decodable video frames (corrupt or truncated)")
    rotation = rotation_from_frame(first.frame)
    w, h = first.frame.width, first.frame.height
    if rotation in (90, 270):
        w, h = h, w
    return VideoInfo(
        duration_s=float(duration),
        fps=fps,
        width=w,
        height=h,
        rotation_deg=rotation,
        has_audio=bool(container.streams.audio),
        codec=stream.codec_context.name,
        container=container.format.name,
        frame_count=frames,
        start_s=max(0.0, start_s) if math.isfinite(start_s) else 0.0,
    )


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a file's header (and its first frame) and describe its video stream."""
    p = Path(path)
    container = open_input(p)
    try:
        return _probe_open(container, p)
    except av.error.FFmpegError as e:
        raise DecodeError(p, f"corrupt ({_reason(e)})") from None
    finally:
        container.close()


# ----------------------------------------------------------------------------- sampling


def sample_times(spec: DecodeSpec, start_s: float, end_s: float) -> list[float]:
    """Target times in [start_s, end_s) following the module's sampling convention."""
    length = max(0.0, end_s - start_s)
    if spec.fps is not None:
        count = int(math.floor(length * spec.fps - 1e-9)) + 1 if length > 0 else 1
        if count <= spec.max_frames:
            return [start_s + k / spec.fps for k in range(count)]
        n = spec.max_frames
    else:
        assert spec.num_frames is not None
        n = spec.num_frames
    return [start_s + (i + 0.5) * length / n for i in range(n)]


def _clip_bounds(info: VideoInfo, path: Path, start_s: float | None, end_s: float | None) -> tuple[float, float]:
    video_end = info.start_s + info.duration_s
    a = info.start_s if start_s is None else float(start_s)
    b = video_end if end_s is None else min(float(end_s), video_end)
    if not math.isfinite(a) or a < 0:
        raise DecodeError(path, f"clip start {start_s!r} must be a finite number of seconds >= 0")
    if end_s is not None and (not math.isfinite(float(end_s)) or float(end_s) <= a):
        raise DecodeError(path, f"clip end {end_s!r} must be after the clip start {a:g}s")
    if a >= video_end and video_end > 0:
        raise DecodeError(path, f"clip start {a:g}s is at or after the end of the video ({video_end:.2f}s)")
    return a, max(b, a)


def frames_at(
    path: str | os.PathLike[str],
    times_s: Sequence[float],
    size: int | None = None,
    mode: str = "crop",
    info: VideoInfo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The frames on screen at `times_s` (any order) as [T, H, W, 3] uint8 RGB and their timestamps.

    `size` with mode "crop": short side -> size, centre crop size×size; "fit": long side -> size.
    """
    p = Path(path)
    if mode not in ("crop", "fit"):
        raise ValueError(f"mode must be 'crop' or 'fit', not {mode!r}")
    if not times_s:
        raise ValueError("times_s is empty")
    order = np.argsort(np.asarray(times_s, dtype=np.float64), kind="stable")
    targets = [float(times_s[i]) for i in order]
    info = info or probe(p)
    picks: list[_Frame] | None = None
    container = open_input(p)
    try:
        stream = _video_stream(container, p)
        origin_s = file_origin_s(container)
        keyframes = _keyframe_times_s(stream, origin_s)
        if keyframes:
            cursor = _FrameCursor(container, stream, p, origin_s, info.fps)
            try:
                picks = _pick_frames(cursor, targets, keyframes)
            except _SeekFailed:  # an index that lies: start over on a fresh demuxer, sequentially
                cursor.close()
                container.close()
                container = open_input(p)
                stream = _video_stream(container, p)
            finally:
                cursor.close()
        if picks is None:
            cursor = _FrameCursor(container, stream, p, origin_s, info.fps)
            try:
                picks = _pick_frames(cursor, targets, [])
            except _SeekFailed as e:  # cannot happen without keyframes; keeps the error typed
                raise DecodeError(p, f"cannot position in the stream ({e})") from None
            finally:
                cursor.close()
        first = picks[0].frame  # scaling happens before rotation, on the coded frame
        geometry = _Geometry.make(first.width, first.height, info.rotation_deg, size, mode)
        out: list[np.ndarray | None] = [None] * len(targets)
        stamps = np.empty(len(targets), dtype=np.float64)
        converted: dict[int, np.ndarray] = {}
        for slot, pick in zip(order, picks):
            key = id(pick)
            if key not in converted:
                converted[key] = geometry.apply(pick.frame)
            out[slot] = converted[key]
            stamps[slot] = pick.time_s
        return np.stack(out), stamps  # type: ignore[arg-type]
    except av.error.FFmpegError as e:
        raise DecodeError(p, f"corrupt ({_reason(e)})") from None
    finally:
        container.close()


def decode(
    path: str | os.PathLike[str],
    spec: DecodeSpec,
    start_s: float | None = None,
    end_s: float | None = None,
) -> DecodedVideo:
    """Sample frames (and optionally audio) from a video or its [start_s, end_s] clip; see module doc."""
    p = Path(path)
    info = probe(p)
    a, b = _clip_bounds(info, p, start_s, end_s)
    frames, stamps = frames_at(p, sample_times(spec, a, b), size=spec.size, mode="crop", info=info)
    audio = None
    has_audio = False
    if spec.audio:
        from tvr.io.audio import read_audio  # imported here: audio.py builds on this module

        audio, has_audio = read_audio(p, spec.audio_rate_hz, start_s=a, end_s=b)
    return DecodedVideo(
        frames=frames,
        timestamps_s=stamps,
        duration_s=b - a,
        audio=audio,
        audio_rate_hz=spec.audio_rate_hz,
        has_audio_stream=has_audio,
        start_s=a,
    )
