"""The audio track of a media file as mono float32 at a fixed rate (silence when there is none).

Samples are placed on the file's clock: sample j of the result is at start_s + j/rate_hz seconds
from the start of the file, so audio lines up with `DecodedVideo.timestamps_s`. Gaps (a track that
starts late or ends early) are zeros; with `end_s` the length is exactly round((end-start)·rate).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import av.error
import numpy as np

from tvr.io.decoded import AUDIO_RATE_HZ
from tvr.io.video import MAX_BAD_PACKETS, DecodeError, _reason, file_origin_s, open_input

# Seeking pays off only past this point; before it, decoding from the start is as cheap.
SEEK_AFTER_S = 2.0


def _decode_mono(
    container, stream, path: Path, rate_hz: int, origin_s: float, stop_s: float | None
) -> tuple[np.ndarray, float | None]:
    """Samples from the current position until `stop_s` (or the end), and the file time of the first."""
    # Keep the channels and average them ourselves: FFmpeg's stereo->mono matrix adds L+R at -3 dB,
    # which changes the level and can leave [-1, 1].
    resampler = av.AudioResampler(format="fltp", rate=rate_hz)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.error.InvalidDataError:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise DecodeError(path, f"corrupt audio: more than {MAX_BAD_PACKETS} undecodable packets") from None
                continue
            done = False
            for frame in frames:
                if frame.pts is not None:
                    t = float(frame.pts * frame.time_base) - origin_s
                    if first_time is None:
                        first_time = t
                    done = stop_s is not None and t > stop_s
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            if done:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
    except av.error.FFmpegError as e:
        raise DecodeError(path, f"corrupt or truncated audio ({_reason(e)})") from None
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples, first_time


def _place(samples: np.ndarray, first_s: float, start_s: float, length: int | None, rate_hz: int) -> np.ndarray:
    """Cut/pad `samples` (first one at `first_s`) to the window starting at `start_s`."""
    offset = int(round((first_s - start_s) * rate_hz))  # >0: the track starts after the window
    if offset >= 0:
        body = samples
        head = offset
    else:
        body = samples[-offset:]
        head = 0
    total = head + len(body) if length is None else length
    out = np.zeros(total, dtype=np.float32)
    n = max(0, min(len(body), total - head))
    if head < total:
        out[head : head + n] = body[:n]
    return out


def read_audio(
    path: str | os.PathLike[str],
    rate_hz: int = AUDIO_RATE_HZ,
    start_s: float | None = None,
    end_s: float | None = None,
) -> tuple[np.ndarray, bool]:
    """(mono float32 samples in [-1, 1], whether the file has an audio stream).

    Without an audio stream the samples are silence as long as the window (or the file).
    """
    p = Path(path)
    if rate_hz <= 0:
        raise ValueError("rate_hz must be > 0")
    a = 0.0 if start_s is None else float(start_s)
    if not math.isfinite(a) or a < 0:
        raise DecodeError(p, f"audio start {start_s!r} must be a finite number of seconds >= 0")
    if end_s is not None and not (math.isfinite(float(end_s)) and float(end_s) >= a):
        raise DecodeError(p, f"audio end {end_s!r} must not be before the start {a:g}s")
    length = None if end_s is None else int(round((float(end_s) - a) * rate_hz))
    container = open_input(p)
    try:
        if not container.streams.audio:
            if length is None:
                total_s = (container.duration or 0) / av.time_base
                length = int(round(max(0.0, total_s - a) * rate_hz))
            return np.zeros(length, dtype=np.float32), False
        stream = container.streams.audio[0]
        origin_s = file_origin_s(container)
        if a > SEEK_AFTER_S:
            try:
                pts = int(math.floor((a - 1.0 + origin_s) / stream.time_base))
                container.seek(pts, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                container.close()
                container = open_input(p)
                stream = container.streams.audio[0]
        samples, first_s = _decode_mono(container, stream, p, rate_hz, origin_s, end_s)
        if first_s is None:
            first_s = 0.0
        if first_s > a + 1e-3 and a > SEEK_AFTER_S:
            # the seek overshot the window (no usable index): decode from the start instead
            container.close()
            container = open_input(p)
            stream = container.streams.audio[0]
            samples, first_s = _decode_mono(container, stream, p, rate_hz, origin_s, end_s)
            first_s = first_s or 0.0
        return _place(samples, first_s, a, length, rate_hz), True
    finally:
        container.close()
