"""Audio (log-mel statistics) and motion (frame differences / normal flow) experts."""

from __future__ import annotations

import math

import numpy as np
from encoder_testlib import video_from_frames

from tvr.encoders.audio import AudioConfig, log_mel_frames, mel_band_centres_hz
from tvr.encoders.motion import MotionConfig
from tvr.encoders.registry import create_video_encoder

RATE = 16_000


def _audio_video(audio: np.ndarray, start_s: float = 0.0):
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    return video_from_frames(frames, start_s=start_s, audio=audio.astype(np.float32))


def test_tone_puts_energy_in_the_right_mel_band_and_silence_gives_the_floor():
    enc = create_video_encoder("audio")
    assert enc.decode_spec().audio
    t = np.arange(int(2.5 * RATE)) / RATE
    tone, silence = _audio_video(0.5 * np.sin(2 * np.pi * 1000 * t), start_s=10.0), _audio_video(np.zeros(RATE * 2))
    out_tone, out_silence = enc.encode([tone, silence])
    assert out_tone["audio"].shape == (3, 128) and out_silence["audio"].shape == (2, 128)
    np.testing.assert_allclose(out_tone["audio_timestamps"], [10.5, 11.5, 12.5])
    centres = mel_band_centres_hz(AudioConfig())
    expected_band = int(np.argmin(np.abs(centres - 1000)))
    for second in range(2):
        mean = out_tone["audio"][second, :64]
        assert int(np.argmax(mean)) == expected_band
        assert mean[expected_band] - np.median(mean) > 10  # far above the other bands (log scale)
    np.testing.assert_array_equal(out_silence["audio"][:, :64], np.float32(math.log(1e-10)))
    np.testing.assert_array_equal(out_silence["audio"][:, 64:], 0.0)
    assert out_tone["audio_present"][0] == 1.0


def test_log_mel_matches_a_brute_force_dft_and_triangle_loop():
    cfg = AudioConfig(n_mels=8)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(1200) * 0.1
    fast = log_mel_frames(audio, cfg)
    win, hop, n_fft = 400, 160, 512
    frame_idx = 3
    seg = audio[frame_idx * hop : frame_idx * hop + win]
    window = [0.5 - 0.5 * math.cos(2 * math.pi * (n + 1) / (win + 1)) for n in range(win)]
    power = []
    for k in range(n_fft // 2 + 1):
        re = sum(seg[n] * window[n] * math.cos(2 * math.pi * k * n / n_fft) for n in range(win))
        im = -sum(seg[n] * window[n] * math.sin(2 * math.pi * k * n / n_fft) for n in range(win))
        power.append(re * re + im * im)
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = [inv(mel(8000) * i / 9) for i in range(10)]
    for band in range(8):
        lo, mid, hi = edges[band : band + 3]
        energy = 0.0
        for k, p in enumerate(power):
            f = k * RATE / n_fft
            weight = (f - lo) / (mid - lo) if lo <= f <= mid else (hi - f) / (hi - mid) if mid < f <= hi else 0.0
            energy += weight * p
        assert math.isclose(fast[frame_idx, band], math.log(max(energy, 1e-10)), rel_tol=1e-9, abs_tol=1e-9)


def _square_video(shift_px: int, seconds: int = 3, fps: float = 4.0, size: int = 64):
    frames = np.zeros((int(seconds * fps), size, size, 3), np.uint8)
    frames[:] = 30
    for i in range(len(frames)):
        x = 8 + shift_px * i
        frames[i, 24:40, x : x + 12] = 220
    return video_from_frames(frames, fps=fps)


def test_motion_is_zero_for_static_video_and_grows_with_movement():
    enc = create_video_encoder("motion")
    assert enc.decode_spec().fps == 4.0
    rng = np.random.default_rng(1)
    texture = np.repeat(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), 12, axis=0)
    static, slow, fast, left = enc.encode(
        [video_from_frames(texture), _square_video(1), _square_video(3), _square_video(-1)]
    )
    dim = MotionConfig().dim
    assert static["motion"].shape == (3, dim) and static["motion_timestamps"].tolist() == [0.5, 1.5, 2.5]
    np.testing.assert_array_equal(static["motion"], 0.0)
    g2 = 16
    energy = lambda f: f["motion"][:, :g2].sum()  # noqa: E731 - pooled |I_t|
    assert energy(fast) > energy(slow) > 0
    mean_u = lambda f: f["motion"][:, g2 : 2 * g2].sum()  # noqa: E731 - normal flow, x component
    assert mean_u(slow) > 0 > mean_u(left)  # square moving right vs left
    assert abs(slow["motion"][:, 2 * g2 : 3 * g2].sum()) < 0.1 * abs(mean_u(slow))  # little vertical flow
