"""Thumbnails: the right frame, the right shape (rotation applied), real JPEGs, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import videogen as vg
from PIL import Image

from tvr.io.thumbs import save_thumbnails, thumbnail_jpeg, thumbnail_name
from tvr.io.video import DecodeError


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("thumbs")
    return {
        "plain": vg.write_video(root / "clip 1.mp4", width=128, height=96),
        "rotated": vg.write_video(root / "phone.mov", rotation_cw=90, width=64, height=48),
    }


def test_save_thumbnails_writes_the_frames_on_screen(clips, tmp_path):
    written = clips["plain"]
    times = [0.0, 1.25, 2.9, 0.5]
    paths = save_thumbnails(written.path, times, tmp_path / "out", size=128)
    assert [p.name for p in paths] == [thumbnail_name(written.path, t) for t in times]
    assert paths[1].name == "clip 1_000001250ms.jpg"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    for path, t in zip(paths, times):
        img = Image.open(path)
        assert img.format == "JPEG" and img.size == (128, 96)
        assert vg.read_index(np.asarray(img.convert("RGB"))) == vg.expected_pick(written.frame_times_s, t)


def test_thumbnail_keeps_aspect_and_rotation(clips):
    jpeg = thumbnail_jpeg(clips["plain"].path, 1.0, size=64)
    assert jpeg[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(jpeg)).size == (64, 48)
    portrait = Image.open(io.BytesIO(thumbnail_jpeg(clips["rotated"].path, 1.0, size=64)))
    assert portrait.size == (48, 64)
    shown = np.rot90(np.asarray(portrait.convert("RGB")), k=1)  # undo the clockwise quarter turn
    assert vg.read_index(shown) == 10


def test_thumbnail_errors(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DecodeError) as err:
        thumbnail_jpeg(bad, 0.0)
    assert str(bad) in str(err.value)
    assert save_thumbnails(bad, [], tmp_path) == []


LEAK_CHECK = """
import gc, os, sys, time
from pathlib import Path
from tvr.io.decoded import DecodeSpec
from tvr.io.thumbs import thumbnail_jpeg
from tvr.io.video import decode, probe
path = Path(sys.argv[1])
thumbnail_jpeg(path, 0.1)  # first use of each call: imports, one-time allocations and thread pools
decode(path, DecodeSpec(num_frames=4, size=32, audio=True))
probe(path)
gc.collect()
gc.disable()  # the decoder must be closed when the call returns, not when the collector runs
time.sleep(0.2)
before = len(os.listdir("/proc/self/task"))
for i in range(25):
    thumbnail_jpeg(path, 0.1 * i)
    decode(path, DecodeSpec(num_frames=4, size=32, audio=True))
    probe(path)
deadline = time.monotonic() + 3.0  # a joined thread can stay listed a moment on a loaded machine
while len(os.listdir("/proc/self/task")) > before and time.monotonic() < deadline:
    time.sleep(0.05)
print(before, len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
def test_decoding_leaves_no_decoder_threads_behind_without_garbage_collection(clips):
    """Counted in a process of its own: engines other tests start here (Ray, gRPC) grow and shrink
    thread pools of their own at any time."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LEAK_CHECK, str(clips["plain"].path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = map(int, done.stdout.split())
    assert after <= before, (before, after)
