"""tvr.io.writer: real files in several containers that decode back to what was written."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tvr.io.writer import write_video

FPS = 8
RATE = 16_000


def _frames(t: int = 16, h: int = 48, w: int = 64) -> np.ndarray:
    """Flat colour blocks that change per frame: robust to lossy coding, easy to check."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, :, : w // 2] = (200, 30 + 10 * i, 40)
        frames[i, :, w // 2 :] = (20, 60, 220 - 8 * i)
    return frames


def _tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _decode(path: Path) -> tuple[list[np.ndarray], np.ndarray | None, int, dict]:
    with av.open(str(path)) as c:
        info = {
            "format": c.format.name,
            "video_codec": c.streams.video[0].codec_context.name,
            "audio_codec": c.streams.audio[0].codec_context.name if c.streams.audio else None,
        }
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    audio, rate = None, 0
    with av.open(str(path)) as c:
        if c.streams.audio:
            chunks = [f.to_ndarray() for f in c.decode(audio=0)]
            rate = c.streams.audio[0].codec_context.sample_rate
            audio = np.concatenate(chunks, axis=1)[0]
    return frames, audio, rate, info


@pytest.mark.parametrize(
    ("name", "codec", "vcodec", "acodec"),
    [
        ("a.mp4", None, "h264", "aac"),
        ("a.webm", None, "vp9", "opus"),
        ("a.mkv", None, "h264", "aac"),
        ("b.mkv", "ffv1", "ffv1", "aac"),
        ("a.mov", None, "h264", "aac"),
    ],
)
def test_roundtrip_containers(tmp_path, name, codec, vcodec, acodec):
    frames = _frames()
    audio = _tone(2.0)
    path = write_video(tmp_path / name, frames, FPS, codec=codec, audio=audio)
    got, got_audio, rate, info = _decode(path)
    assert info["video_codec"] == vcodec and info["audio_codec"] == acodec
    assert len(got) == len(frames)
    assert got[0].shape == frames[0].shape
    for want, have in zip(frames, got):
        # compare block means: colour survives the codec within a few levels
        np.testing.assert_allclose(have[4:-4, 4:28].mean((0, 1)), want[4:-4, 4:28].mean((0, 1)), atol=6)
        np.testing.assert_allclose(have[4:-4, 36:-4].mean((0, 1)), want[4:-4, 36:-4].mean((0, 1)), atol=6)
    assert got_audio is not None
    assert abs(len(got_audio) / rate - 2.0) < 0.1
    spectrum = np.abs(np.fft.rfft(got_audio))
    assert abs(np.argmax(spectrum) * rate / len(got_audio) - 440.0) < 5.0
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_no_audio_stream_when_audio_is_none(tmp_path):
    path = write_video(tmp_path / "v.mp4", _frames(), FPS)
    with av.open(str(path)) as c:
        assert not c.streams.audio
        assert c.duration is not None and abs(c.duration / 1e6 - 2.0) < 0.05


def test_rotation_metadata(tmp_path):
    path = write_video(tmp_path / "r.mp4", _frames(), FPS, rotation_deg=90)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    assert frame.rotation == 90
    assert frame.to_ndarray(format="rgb24").shape == (48, 64, 3)  # pixels are stored unrotated


def test_same_input_same_bytes(tmp_path):
    frames, audio = _frames(), _tone(2.0)
    for ext in (".mp4", ".webm"):
        a = write_video(tmp_path / f"a{ext}", frames, FPS, audio=audio).read_bytes()
        b = write_video(tmp_path / f"b{ext}", frames, FPS, audio=audio).read_bytes()
        assert a == b


def test_overwrite_is_atomic_and_failures_leave_nothing(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _frames(t=4), FPS)
    old = path.read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        write_video(path, _frames().astype(np.float32), FPS)
    with pytest.raises(ValueError, match="even"):
        write_video(path, _frames(h=47), FPS)
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "v.xyz", _frames(), FPS)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    write_video(path, _frames(t=6), FPS)
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
