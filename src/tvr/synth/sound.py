"""A scene's audio track: short high beeps, a continuous low hum, or silence.

The three are easy to tell apart from a log-mel spectrogram (energy above 500 Hz in bursts versus
steady energy below 300 Hz versus none), so an audio expert can learn them in minutes.
"""

from __future__ import annotations

import numpy as np

from tvr.synth.world import Scene

BEEP_PERIOD_S = 0.4
BEEP_LENGTH_S = 0.12


def render_audio(scene: Scene, seconds: float, rate_hz: int) -> np.ndarray:
    """[S] float32 mono in [-1, 1]."""
    n = int(round(seconds * rate_hz))
    t = np.arange(n, dtype=np.float64) / rate_hz
    if scene.sound == "silence":
        return np.zeros(n, dtype=np.float32)
    if scene.sound == "beeps":
        phase = np.mod(t, BEEP_PERIOD_S)
        on = phase < BEEP_LENGTH_S
        # raised-cosine envelope per beep, so there are no clicks
        envelope = np.where(on, np.sin(np.pi * phase / BEEP_LENGTH_S) ** 2, 0.0)
        return (0.5 * envelope * np.sin(2 * np.pi * scene.beep_hz * t)).astype(np.float32)
    if scene.sound == "hum":
        tone = np.sin(2 * np.pi * scene.hum_hz * t) + 0.3 * np.sin(2 * np.pi * 2 * scene.hum_hz * t)
        fade = np.clip(np.minimum(t, seconds - t) / 0.05, 0.0, 1.0)
        return (0.35 * fade * tone).astype(np.float32)
    raise ValueError(f"unknown sound {scene.sound!r}")
