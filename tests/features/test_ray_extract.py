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


def test_ray_store_equals_the_local_pools_bit_for_bit(local_ray, tmp_path):
    videos = tmp_path / "videos"
    for i in range(7):
        make_video(videos / f"v{i}.mp4", seed=i)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    local = extract_features(videos, "pixels", tmp_path / "local", workers=2, progress=False)
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
