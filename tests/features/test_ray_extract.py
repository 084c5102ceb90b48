"""Extraction with decoding on Ray (local mode, started by the test): the feature store's contents
equal the local worker pool's bit for bit, broken and hanging files included."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from feature_helpers import make_video

ray = pytest.importorskip("ray", reason="Ray is a test dependency (pip install -e .[dev])")

from tvr.features.extract import extract_features  # noqa: E402
from tvr.features.store import FeatureStore  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _digest(store_dir: Path) -> dict[str, object]:
    """Per key: status and error, and the sha256 of every stored tensor."""
    out: dict[str, object] = {}
    with FeatureStore(store_dir) as store:
        for entry in store.entries():
            tensors = {}
            if entry.status == "ok":
                for name, array in sorted(store.get(entry.key).items()):
                    a = np.ascontiguousarray(array)
                    tensors[name] = (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
            out[entry.key] = (entry.status, entry.error, tensors)
    return out


def _videos_and_local_store(tmp_path: Path, n: int):
    """(folder of `n` videos and one broken file, the report of extracting it with local processes into tmp_path/local)."""
    videos = tmp_path / "videos"
    for i in range(n):
        make_video(videos / f"v{i}.mp4", seed=i)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    return videos, extract_features(videos, "pixels", tmp_path / "local", workers=2, progress=False)


def test_ray_store_equals_the_local_pools_bit_for_bit(local_ray, tmp_path):
    videos, local = _videos_and_local_store(tmp_path, 7)
    remote = extract_features(videos, "pixels", tmp_path / "ray", workers=2, progress=False, ray="local")
    assert (remote.ok, len(remote.failed), remote.extracted) == (local.ok, len(local.failed), local.extracted) == (7, 1, 7)
    assert _digest(tmp_path / "ray") == _digest(tmp_path / "local")
    again = extract_features(videos, "pixels", tmp_path / "ray", workers=2, progress=False, ray="local")
    assert (again.extracted, again.skipped) == (0, 8)  # resume: what the store holds is not decoded again


def test_a_hanging_decode_is_cancelled_and_recorded(local_ray, tmp_path):
    import feature_helpers
    from feature_helpers import hang_or_decode

    ray.cloudpickle.register_pickle_by_value(feature_helpers)  # Ray's workers cannot import the tests' helpers

    videos = tmp_path / "videos"
    for i in range(3):
        make_video(videos / f"v{i}.mp4", seed=i)
    (videos / "hang_me.mp4").write_bytes((videos / "v0.mp4").read_bytes())
    report = extract_features(videos, "pixels", tmp_path / "s", workers=2, progress=False, timeout_s=3.0,
                              decode_fn=hang_or_decode, ray="local")
    assert report.ok == 3 and [Path(f["path"]).name for f in report.failed] == ["hang_me.mp4"]
    assert "timed out after 3 s" in report.failed[0]["error"]


DRIVER = """
import sys
sys.path.insert(0, {helpers!r})
import ray
import feature_helpers
from tvr.features.extract import extract_features
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
ray.cloudpickle.register_pickle_by_value(feature_helpers)
extract_features({videos!r}, "pixels", {store!r}, workers=2, batch_videos=2, progress=False,
                 decode_fn=feature_helpers.slow_decode, ray="local")
"""


def _committed(store_dir: Path) -> int:
    import sqlite3

    db = store_dir / "store.sqlite"
    if not db.is_file():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM videos").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0
    finally:
        con.close()


def _session_processes(sid: int) -> list[int]:
    import os

    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def test_a_killed_ray_driver_resumes_to_the_same_store(local_ray, tmp_path):
    """SIGKILL the driver (and its Ray) part-way; a new run resumes and the store equals a local run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    videos, local = _videos_and_local_store(tmp_path, 10)
    store = tmp_path / "ray"
    script = DRIVER.format(helpers=str(Path(__file__).parent), videos=str(videos), store=str(store))
    driver = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while _committed(store) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, f"the driver ended before it was killed: {driver.stderr.read()[-2000:]!r}"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait(timeout=30)
    finally:
        for pid in _session_processes(driver.pid):  # anything of that session that outlived the kill
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        driver.stderr.close()
    done = _committed(store)
    assert 2 <= done < 11, done  # killed part-way
    resumed = extract_features(videos, "pixels", store, workers=2, progress=False, ray="local")
    assert resumed.skipped == done and resumed.total == 11 and (resumed.ok, len(resumed.failed)) == (10, 1)
    assert _digest(store) == _digest(tmp_path / "local") and local.ok == 10
    with FeatureStore(store) as opened:
        assert opened.verify() == []  # no half-written shard is referenced
