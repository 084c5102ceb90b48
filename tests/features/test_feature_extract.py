import json
import os

import numpy as np
import pytest
from feature_helpers import (
    MeanColorConfig,
    MeanColorEncoder,
    frame_colors,
    hang_or_decode,
    make_video,
    reference_features,
    simple_decode,
)

from tvr.errors import TvrError
from tvr.features.extract import extract_features, plan_jobs
from tvr.features.store import FeatureStore, clip_key


def _extract(src, store, encoder=None, **kw):
    kw.setdefault("decode_fn", simple_decode)
    kw.setdefault("progress", False)
    kw.setdefault("workers", 1)
    return extract_features(src, encoder or MeanColorEncoder(), store, **kw)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "videos"
    for i in range(5):
        make_video(src / ("sub" if i % 2 else "") / f"v{i}.mp4", seed=i)
    (src / "broken.mp4").write_bytes(b"\x00" * 300)  # not a video
    (src / "notes.txt").write_text("not a video extension")
    return src


def test_folder_extracts_every_video_with_correct_features(folder, tmp_path):
    enc = MeanColorEncoder()
    report = _extract(folder, tmp_path / "store", enc, batch_videos=2, workers=2)
    assert (report.total, report.ok, report.skipped, report.extracted) == (6, 5, 0, 5)
    assert [f["key"] for f in report.failed] == [clip_key(folder / "broken.mp4")]
    assert report.failed[0]["error"]
    assert max(enc.batch_sizes) == 2  # frames of several videos share one encoder call
    store = FeatureStore(tmp_path / "store")
    assert store.verify() == []
    for i in range(5):
        path = folder / ("sub" if i % 2 else "") / f"v{i}.mp4"
        got = store.get(clip_key(path))
        want = reference_features(path)
        np.testing.assert_allclose(got["frame_mean"], want["frame_mean"], atol=1e-4)
        np.testing.assert_allclose(got["timestamps"], want["timestamps"], atol=1e-6)
        # and the decoded colours are the ones the video was made of (lossy coding: a few levels off)
        picked = frame_colors(i, 8)[np.linspace(0, 7, 4).round().astype(int)]
        np.testing.assert_allclose(got["frame_mean"], picked, atol=6)
        e = store.entry(clip_key(path))
        assert e.duration_s == pytest.approx(1.0) and e.encoder_name == "test-mean-color"
    shards = sorted((tmp_path / "store" / "shards").iterdir())
    assert len(shards) == 3  # 5 videos in batches of 2

    again = _extract(folder, tmp_path / "store", batch_videos=2)
    assert (again.total, again.ok, again.skipped, again.extracted, len(again.failed)) == (6, 5, 6, 0, 1)
    assert sorted((tmp_path / "store" / "shards").iterdir()) == shards


def test_changed_file_reextracted_touched_file_skipped(folder, tmp_path):
    _extract(folder, tmp_path / "store")
    changed, touched = folder / "v0.mp4", folder / "v2.mp4"
    make_video(changed, seed=100)
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    report = _extract(folder, tmp_path / "store")
    assert (report.extracted, report.skipped, report.total) == (1, 5, 6)
    store = FeatureStore(tmp_path / "store")
    np.testing.assert_allclose(store.get(clip_key(changed))["frame_mean"], reference_features(changed)["frame_mean"], atol=1e-4)
    assert store.entry(clip_key(touched)).mtime_ns == touched.stat().st_mtime_ns  # remembered: no re-hash next time
    assert store.verify() == [] and len(store.keys(None)) == 6


def test_failed_video_retried_only_on_request_or_change(folder, tmp_path):
    _extract(folder, tmp_path / "store")
    assert _extract(folder, tmp_path / "store").extracted == 0
    r = _extract(folder, tmp_path / "store", retry_failed=True)
    assert (r.extracted, r.skipped, len(r.failed)) == (0, 5, 1)  # tried again, failed again
    make_video(folder / "broken.mp4", seed=42)  # fixed by the user
    r = _extract(folder, tmp_path / "store")
    assert (r.extracted, r.ok, r.failed) == (1, 6, [])


def test_new_encoder_version_reextracts_other_encoder_refused(folder, tmp_path):
    _extract(folder, tmp_path / "store")
    r = _extract(folder, tmp_path / "store", MeanColorEncoder(MeanColorConfig(version="2")))
    assert (r.extracted, r.skipped) == (5, 0)
    assert {e.encoder_version for e in FeatureStore(tmp_path / "store").entries()} == {"2"}

    class Other(MeanColorEncoder):
        name = "other"

    with pytest.raises(TvrError, match="separate --out"):
        _extract(folder, tmp_path / "store", Other())


def test_manifest_clips_are_separate_entries_and_duplicates_extracted_once(tmp_path):
    make_video(tmp_path / "v" / "a.mp4", seed=1)
    make_video(tmp_path / "v" / "b.mp4", seed=2)
    lines = [
        {"video": "v/a.mp4", "caption": "one"},
        {"video": "v/a.mp4", "caption": "same video again"},
        {"video": "v/a.mp4", "caption": "a clip", "start": 0.25, "end": 0.75},
        {"video": str(tmp_path / "v" / "a.mp4"), "caption": "absolute, same clip", "start": 0.25, "end": 0.75},
        {"video": "v/b.mp4", "caption": "two"},
        {"video": "v/missing.mp4", "caption": "gone"},
        {"video": "v/a.mp4", "caption": "the first video, named again at the end"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    a = str((tmp_path / "v" / "a.mp4").resolve())
    assert [j.key for j in plan_jobs(manifest)] == [
        a, f"{a}#0.25-0.75", str((tmp_path / "v" / "b.mp4").resolve()), str((tmp_path / "v" / "missing.mp4").resolve())
    ]
    r = _extract(manifest, tmp_path / "store")
    assert (r.total, r.ok, r.extracted) == (4, 3, 3)
    assert "cannot read file" in r.failed[0]["error"] and r.failed[0]["path"].endswith("missing.mp4")
    store = FeatureStore(tmp_path / "store")
    clip = store.get(f"{a}#0.25-0.75")
    want = simple_decode(tmp_path / "v" / "a.mp4", MeanColorEncoder().decode_spec(), 0.25, 0.75)
    np.testing.assert_allclose(clip["timestamps"], want.timestamps_s, atol=1e-6)
    assert clip["timestamps"].min() >= 0.25 and clip["timestamps"].max() < 0.75
    e = store.entry(f"{a}#0.25-0.75")
    assert (e.start_s, e.end_s, e.path) == (0.25, 0.75, a)


def test_hanging_video_killed_recorded_and_run_goes_on(folder, tmp_path):
    make_video(folder / "hang.mp4", seed=7)
    r = _extract(folder, tmp_path / "store", decode_fn=hang_or_decode, timeout_s=2.0)
    assert (r.ok, r.extracted) == (5, 5)
    errors = {f["path"]: f["error"] for f in r.failed}
    assert "timed out after 2 s" in errors[str((folder / "hang.mp4").resolve())]


def test_encoder_error_fails_only_that_video(folder, tmp_path):
    (folder / "broken.mp4").unlink()
    first = simple_decode(folder / "sub" / "v3.mp4", MeanColorEncoder().decode_spec(), None, None).frames[0]
    marker = ",".join(str(int(round(c))) for c in first.reshape(-1, 3).mean(axis=0))
    enc = MeanColorEncoder(MeanColorConfig(fail_on=marker))
    r = _extract(folder, tmp_path / "store", enc, batch_videos=8)
    assert r.ok == 4
    assert r.failed == [{"path": str((folder / "sub" / "v3.mp4").resolve()), "key": clip_key(folder / "sub" / "v3.mp4"),
                         "error": "encode failed: RuntimeError: encoder rejects this video"}]


def test_bad_arguments(folder, tmp_path):
    with pytest.raises(TvrError, match="no such file"):
        _extract(tmp_path / "nope", tmp_path / "store")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TvrError, match="no video files"):
        _extract(tmp_path / "empty", tmp_path / "store")
    with pytest.raises(TvrError, match="workers"):
        _extract(folder, tmp_path / "store", workers=0)
