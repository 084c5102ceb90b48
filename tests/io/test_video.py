"""Decoding real encoded files of every supported kind against the frame times we encoded into them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import videogen as vg
from PIL import Image

import tvr.io.video as video
from tvr.errors import TvrError
from tvr.io.decoded import DecodeSpec
from tvr.io.discover import VIDEO_EXTENSIONS, find_videos
from tvr.io.video import DecodeError, decode, frames_at, probe, sample_times

VFR_TIMES = (0.0, 0.04, 0.1, 0.11, 0.3, 0.31, 0.32, 0.6, 1.0, 1.005, 1.5, 1.52)

FORMATS = {
    # name: (writer kwargs, expected codec, substring of the demuxer name)
    "h264 aac.mp4": (dict(audio=("aac", 440.0)), "h264", "mp4"),
    "vp9 opus.webm": (dict(codec="libvpx-vp9", audio=("libopus", 440.0)), "vp9", "webm"),
    "h264.mkv": (dict(audio=("aac", 440.0)), "h264", "matroska"),
    "mjpeg pcm.avi": (dict(codec="mjpeg", pix_fmt="yuvj420p", audio=("pcm_s16le", 440.0)), "mjpeg", "avi"),
    "h264.mov": (dict(), "h264", "mov"),
    "anim.gif": (dict(codec="gif", pix_fmt="rgb8"), "gif", "gif"),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, vg.Written]:
    """All generated files, in a folder whose name has spaces and non-ASCII characters."""
    root = tmp_path_factory.mktemp("io") / "vidéos à tester 日本"
    root.mkdir()
    out: dict[str, vg.Written] = {}
    for name, (kwargs, _, _) in FORMATS.items():
        out[name] = vg.write_video(root / name, **kwargs)
    for deg in (90, 180, 270):
        out[f"rot{deg}"] = vg.write_video(root / f"rot{deg}.mp4", rotation_cw=deg)
    out["rot90.mov"] = vg.write_video(root / "rot90 phone.mov", rotation_cw=90, width=96, height=64)
    out["vfr.mp4"] = vg.write_video(root / "vfr.mp4", times_s=VFR_TIMES, b_frames=False)
    out["vfr.mkv"] = vg.write_video(root / "vfr.mkv", times_s=VFR_TIMES)
    # long enough to need seeking: 400 frames, a keyframe every 10, B-frames on
    out["long"] = vg.write_video(root / "long.mp4", n_frames=400, fps=40, gop=10, width=96)
    faststart = vg.write_video(root / "faststart.mp4", n_frames=60, options={"movflags": "faststart"}, noise=True)
    out["faststart"] = faststart
    return out


def _indices(frames: np.ndarray, rotation_deg: int = 0) -> list[int]:
    return [vg.read_index(np.rot90(f, k=rotation_deg // 90)) for f in frames]


def _expected(written: vg.Written, targets: list[float]) -> list[int]:
    return [vg.expected_pick(written.frame_times_s, t) for t in targets]


def test_sample_times_convention():
    assert sample_times(DecodeSpec(num_frames=4), 0.0, 2.0) == [0.25, 0.75, 1.25, 1.75]
    assert sample_times(DecodeSpec(num_frames=2), 1.0, 3.0) == [1.5, 2.5]
    np.testing.assert_allclose(sample_times(DecodeSpec(num_frames=None, fps=2.0), 1.0, 3.0), [1.0, 1.5, 2.0, 2.5])
    capped = sample_times(DecodeSpec(num_frames=None, fps=100.0, max_frames=4), 0.0, 2.0)
    assert capped == [0.25, 0.75, 1.25, 1.75]  # above the cap: uniform over the whole clip


@pytest.mark.parametrize("name", list(FORMATS))
def test_containers_and_codecs(media, name):
    written = media[name]
    _, codec, demuxer = FORMATS[name]
    info = probe(written.path)
    assert info.codec == codec
    assert demuxer in info.container
    assert (info.width, info.height, info.rotation_deg) == (64, 48, 0)
    assert info.fps == pytest.approx(10.0)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.frame_count == 30
    assert info.has_audio == (written.audio_hz is not None)

    n = 7
    d = decode(written.path, DecodeSpec(num_frames=n))
    targets = [(i + 0.5) * info.duration_s / n for i in range(n)]
    expected = _expected(written, targets)
    assert d.frames.shape == (n, 48, 64, 3) and d.frames.dtype == np.uint8
    assert _indices(d.frames) == expected
    np.testing.assert_allclose(d.timestamps_s, [written.frame_times_s[i] for i in expected], atol=1e-6)
    assert d.duration_s == pytest.approx(info.duration_s)
    assert d.audio is None


@pytest.mark.parametrize("key,deg", [("rot90", 90), ("rot180", 180), ("rot270", 270), ("rot90.mov", 90)])
def test_rotation_metadata_is_applied(media, key, deg):
    written = media[key]
    info = probe(written.path)
    assert info.rotation_deg == deg
    portrait = deg in (90, 270)
    w, h = (written.height, written.width) if portrait else (written.width, written.height)
    assert (info.width, info.height) == (w, h)
    d = decode(written.path, DecodeSpec(num_frames=5))
    assert d.frames.shape == (5, h, w, 3)
    # undoing a clockwise rotation (k = deg/90 counter-clockwise quarter turns) must show the index
    targets = [(i + 0.5) * info.duration_s / 5 for i in range(5)]
    assert _indices(d.frames, deg) == _expected(written, targets)
    cropped = decode(written.path, DecodeSpec(num_frames=2, size=32))
    assert cropped.frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("key", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_picks_the_frame_on_screen(media, key):
    written = media[key]
    for spec in (DecodeSpec(num_frames=9), DecodeSpec(num_frames=None, fps=7.0)):
        info = probe(written.path)
        d = decode(written.path, spec)
        targets = sample_times(spec, info.start_s, info.start_s + info.duration_s)
        expected = _expected(written, targets)
        assert _indices(d.frames) == expected
        np.testing.assert_allclose(d.timestamps_s, [VFR_TIMES[i] for i in expected], atol=1e-3)


def test_seeking_matches_sequential_reference_and_decodes_less(media, monkeypatch):
    written = media["long"]
    pulled = {"frames": 0, "seeks": 0}
    real_next, real_seek = video._FrameCursor.next, video._FrameCursor.seek

    def counting_next(self):
        frame = real_next(self)
        pulled["frames"] += frame is not None
        return frame

    def counting_seek(self, t):
        pulled["seeks"] += 1
        return real_seek(self, t)

    monkeypatch.setattr(video._FrameCursor, "next", counting_next)
    monkeypatch.setattr(video._FrameCursor, "seek", counting_seek)
    info = probe(written.path)
    pulled.update(frames=0, seeks=0)
    d = decode(written.path, DecodeSpec(num_frames=12))
    targets = [(i + 0.5) * info.duration_s / 12 for i in range(12)]
    assert _indices(d.frames) == _expected(written, targets)
    assert pulled["seeks"] >= 10
    # ideal: 12 targets x (<= 10 frames from a keyframe + 1 look-ahead); seeking must not land early
    assert pulled["frames"] <= 12 * 12

    # a clip of the file: timestamps stay on the file's clock
    clip = decode(written.path, DecodeSpec(num_frames=6), start_s=2.0, end_s=5.0)
    clip_targets = [2.0 + (i + 0.5) * 3.0 / 6 for i in range(6)]
    assert _indices(clip.frames) == _expected(written, clip_targets)
    assert clip.start_s == 2.0 and clip.duration_s == pytest.approx(3.0)
    assert clip.timestamps_s.min() >= 2.0 and clip.timestamps_s.max() < 5.0

    # arbitrary times, unsorted and repeated, same answer as brute force
    times = [9.9, 0.0, 3.3, 3.3, 0.013, 7.77, 5.0]
    frames, stamps = frames_at(written.path, times)
    assert _indices(frames) == _expected(written, times)


def test_more_frames_than_the_video_has_repeats_frames(media):
    written = media["anim.gif"]
    d = decode(written.path, DecodeSpec(num_frames=45))
    assert d.frames.shape[0] == 45
    assert np.all(np.diff(d.timestamps_s) >= 0)
    assert sorted(set(_indices(d.frames))) == list(range(30))


def test_resize_short_side_then_centre_crop(media):
    written = media["h264.mov"]
    d = decode(written.path, DecodeSpec(num_frames=3, size=24))
    assert d.frames.shape == (3, 24, 24, 3)
    full = decode(written.path, DecodeSpec(num_frames=3))
    for small, big in zip(d.frames, full.frames):
        # reference: 64x48 -> short side 24 gives 32x24, centre crop columns 4..28
        ref = np.asarray(Image.fromarray(big).resize((32, 24), Image.BICUBIC))[:, 4:28].astype(np.float32)
        assert np.abs(small.astype(np.float32) - ref).mean() < 8.0


def test_decoding_is_deterministic(media):
    path = media["vp9 opus.webm"].path
    a = decode(path, DecodeSpec(num_frames=5, size=32))
    b = decode(path, DecodeSpec(num_frames=5, size=32))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.timestamps_s, b.timestamps_s)


# ----------------------------------------------------------------------------- broken input


def _assert_decode_error(path: Path, needle: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode(path, DecodeSpec())
    assert isinstance(err.value, TvrError)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty clip.mp4"
    path.write_bytes(b"")
    _assert_decode_error(path, "empty file")


def test_missing_file(tmp_path):
    _assert_decode_error(tmp_path / "nope.mp4", "not found")


def test_not_a_video(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _assert_decode_error(path, "corrupt")


def test_audio_only_file(tmp_path):
    path = vg.write_audio_only(tmp_path / "song.m4a")
    _assert_decode_error(path, "no video stream")
    with pytest.raises(DecodeError, match="no video stream"):
        probe(path)


def test_truncated_without_index(media, tmp_path):
    # the moov box is at the end of a normal MP4: a cut file has no index at all
    cut = vg.truncate(media["h264 aac.mp4"].path, tmp_path / "cut.mp4", keep=0.5)
    _assert_decode_error(cut, "corrupt")


def test_truncated_with_index_at_front(media, tmp_path):
    # faststart: the index promises 6 s, the data stops after about half of it
    cut = vg.truncate(media["faststart"].path, tmp_path / "cut fast.mp4", keep=0.5)
    _assert_decode_error(cut, "truncated")
    # the first second is still there and decodes
    d = decode(cut, DecodeSpec(num_frames=3), start_s=0.0, end_s=1.0)
    assert _indices(d.frames) == [1, 5, 8]


def test_garbage_in_the_middle_terminates(media, tmp_path):
    data = bytearray(media["mjpeg pcm.avi"].path.read_bytes())
    rng = np.random.default_rng(1)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.avi"
    path.write_bytes(bytes(data))
    try:
        d = decode(path, DecodeSpec(num_frames=6))
    except DecodeError as e:
        assert str(path) in str(e)
    else:
        assert d.frames.shape[0] == 6


def test_clip_outside_the_video(media):
    path = media["h264.mov"].path
    with pytest.raises(DecodeError, match="after the end"):
        decode(path, DecodeSpec(), start_s=10.0)
    with pytest.raises(DecodeError, match="after the clip start"):
        decode(path, DecodeSpec(), start_s=2.0, end_s=1.0)
    d = decode(path, DecodeSpec(num_frames=2), start_s=2.0, end_s=99.0)  # end clamps to the video
    assert d.duration_s == pytest.approx(1.0)


# ----------------------------------------------------------------------------- real files


def test_real_clips_decode(realdata):
    clips = sorted((realdata / "clips").glob("*.mp4")) + sorted((realdata / "clips").glob("*.gif"))
    assert clips
    for path in clips:
        info = probe(path)
        d = decode(path, DecodeSpec(num_frames=12, size=64))
        assert d.frames.shape == (12, 64, 64, 3)
        assert np.all(np.diff(d.timestamps_s) >= 0)
        assert 0 <= d.timestamps_s[0] and d.timestamps_s[-1] <= info.start_s + info.duration_s
        assert d.frames.std() > 5  # real pictures, not blank frames
    info = probe(realdata / "clips" / "mmaction2_test.mp4")
    assert (info.width, info.height, info.fps, info.frame_count) == (340, 256, 30.0, 300)
    gif = probe(realdata / "clips" / "msrvtt_video7365.gif")
    assert (gif.width, gif.height, gif.frame_count, gif.duration_s) == (298, 224, 16, pytest.approx(1.6))


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames,width,height:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian ffmpeg) is not installed")
def test_probe_agrees_with_ffprobe(media):
    for key in ("h264 aac.mp4", "long", "mjpeg pcm.avi"):
        path = media[key].path
        ref = _ffprobe(path)
        info = probe(path)
        stream = ref["streams"][0]
        assert info.frame_count == int(stream["nb_read_frames"])
        assert (info.width, info.height) == (stream["width"], stream["height"])
        assert info.duration_s == pytest.approx(float(ref["format"]["duration"]), abs=0.06)
        # and every frame ffprobe counts is reachable by decoding at its own time
        d = decode(path, DecodeSpec(num_frames=info.frame_count))
        assert len(set(d.timestamps_s.tolist())) == int(stream["nb_read_frames"])


# ----------------------------------------------------------------------------- discovery


def test_find_videos(tmp_path):
    for rel in ["b.MP4", "a/clip 1.webm", "a/z.gif", "a/notes.txt", ".hidden/x.mp4", "a/.y.mkv", "c/d/e.mov"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["a/clip 1.webm", "a/z.gif", "b.MP4", "c/d/e.mov"]
    assert {".mp4", ".gif", ".webm", ".mkv", ".avi", ".mov"} <= VIDEO_EXTENSIONS
    with pytest.raises(TvrError, match="not found"):
        find_videos(tmp_path / "missing")
