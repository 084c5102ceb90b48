"""Audio extraction: level, pitch, alignment on the file clock, windows, and silence without a track."""

from __future__ import annotations

import math

import numpy as np
import pytest
import videogen as vg

from tvr.io.audio import read_audio
from tvr.io.decoded import DecodeSpec
from tvr.io.video import DecodeError, decode

RATE = 16_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio") / "sons ü"
    root.mkdir()
    return {
        "aac": vg.write_video(root / "tone aac.mp4", audio=("aac", 440.0)),
        "opus": vg.write_video(root / "tone.webm", codec="libvpx-vp9", audio=("libopus", 1000.0)),
        # PCM is lossless and has no encoder delay: sample-exact checks use it
        "pcm": vg.write_video(root / "tone pcm.mkv", n_frames=80, audio=("pcm_s16le", 250.0)),
        "silent": vg.write_video(root / "no audio.mp4"),
        "m4a": vg.write_audio_only(root / "voice.m4a", hz=300.0, seconds=1.5),
    }


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("key,hz", [("aac", 440.0), ("opus", 1000.0), ("pcm", 250.0), ("m4a", 300.0)])
def test_tone_level_and_pitch(files, key, hz):
    path = files[key] if key == "m4a" else files[key].path
    samples, had = read_audio(path, RATE)
    assert had and samples.dtype == np.float32
    assert np.abs(samples).max() <= 1.0
    body = samples[RATE // 4 : -RATE // 4]  # away from codec priming / padding
    assert _peak_hz(body, RATE) == pytest.approx(hz, abs=3.0)
    # stereo L=R=0.5·sin is averaged, not summed at -3 dB: RMS of a 0.5 sine is 0.5/sqrt(2)
    assert float(np.sqrt(np.mean(body**2))) == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_window_is_exact_and_on_the_file_clock(files):
    path = files["pcm"].path  # 8 s, 250 Hz
    full, _ = read_audio(path, RATE)
    t = np.arange(len(full)) / RATE
    analytic = 0.5 * np.sin(2 * np.pi * 250.0 * t)
    # the resampler's filter has no past at sample 0; from a few samples on the match is exact
    np.testing.assert_allclose(full[8 : 6 * RATE], analytic[8 : 6 * RATE], atol=2e-3)
    # a window after the seek threshold equals the same slice of the full read, sample for sample
    part, had = read_audio(path, RATE, start_s=5.0, end_s=6.25)
    assert had and len(part) == int(1.25 * RATE)
    np.testing.assert_allclose(part, full[5 * RATE : int(6.25 * RATE)], atol=1e-4)
    early, _ = read_audio(path, RATE, start_s=0.5, end_s=1.0)
    np.testing.assert_allclose(early, full[RATE // 2 : RATE], atol=1e-4)
    # a window past the end of the track is padded with silence to the requested length
    tail, _ = read_audio(path, RATE, start_s=7.5, end_s=9.0)
    assert len(tail) == int(1.5 * RATE) and np.all(tail[int(0.6 * RATE) :] == 0)


def test_other_rates(files):
    samples, _ = read_audio(files["pcm"].path, 8000, start_s=1.0, end_s=2.0)
    assert len(samples) == 8000
    assert _peak_hz(samples, 8000) == pytest.approx(250.0, abs=2.0)


def test_no_audio_stream_gives_silence(files):
    samples, had = read_audio(files["silent"].path, RATE, start_s=0.5, end_s=2.0)
    assert not had and samples.shape == (int(1.5 * RATE),) and not samples.any()
    whole, had = read_audio(files["silent"].path, RATE)
    assert not had and len(whole) == 3 * RATE
    d = decode(files["silent"].path, DecodeSpec(num_frames=4, audio=True))
    assert d.has_audio_stream is False and d.audio is not None
    assert d.audio.shape == (3 * RATE,) and not d.audio.any()


def test_decode_with_audio_matches_clip(files):
    d = decode(files["pcm"].path, DecodeSpec(num_frames=4, audio=True), start_s=2.0, end_s=4.0)
    assert d.has_audio_stream and d.audio_rate_hz == RATE
    assert d.audio.shape == (2 * RATE,)
    ref, _ = read_audio(files["pcm"].path, RATE, start_s=2.0, end_s=4.0)
    np.testing.assert_array_equal(d.audio, ref)


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file") as err:
        read_audio(empty)
    assert str(empty) in str(err.value)
    with pytest.raises(DecodeError, match="not found"):
        read_audio(tmp_path / "missing.wav")
