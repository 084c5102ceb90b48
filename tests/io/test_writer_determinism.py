"""write_video gives the same bytes for the same frames every time, on a loaded machine too.

x264's macroblock-tree pass once made reruns differ (tvr switches it off); this encodes the same
clip many times in one process, with the cores busy, for every container the synthetic world uses.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tvr.io.writer import write_video

RATE = 16_000


def _clip(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A moving disc over noise (enough texture for the encoder's rate control to have choices)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    frames = np.empty((16, 64, 64, 3), np.uint8)
    base = rng.integers(80, 160, size=(64, 64, 3))
    for t in range(16):
        disc = (yy - 20 - t) ** 2 + (xx - 10 - 2 * t) ** 2 < 90
        frames[t] = np.where(disc[..., None], (220, 40, 40), base)
    audio = (0.4 * np.sin(2 * np.pi * 880 * np.arange(2 * RATE) / RATE)).astype(np.float32)
    return frames, audio


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", None), (".mkv", None), (".mkv", "ffv1"), (".webm", None)])
def test_same_frames_same_bytes_under_load(tmp_path, cpu_load, suffix, codec):
    digests = set()
    for rep in range(12):
        frames, audio = _clip(seed=rep % 3)
        path = tmp_path / f"rep{rep}{suffix}"
        write_video(path, frames, 8.0, codec=codec, audio=audio, audio_rate_hz=RATE)
        digests.add((rep % 3, hashlib.sha256(path.read_bytes()).hexdigest()))
    assert len(digests) == 3  # one file per distinct clip, however often it was encoded
