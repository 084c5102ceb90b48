import os
import sqlite3

import numpy as np
import pytest
from safetensors import safe_open

from tvr.errors import TvrError
from tvr.features.store import (
    EncoderInfo,
    Extracted,
    Failure,
    FeatureStore,
    MissingFeatures,
    clip_key,
    content_hash,
    file_identity,
)
from tvr.io.manifest import ManifestEntry

ENC = EncoderInfo("enc", "v1")


def _done(tmp_path, name, seed, start=None, end=None):
    path = tmp_path / name
    if not path.exists():
        path.write_bytes(np.random.default_rng(seed).bytes(100 + seed))
    rng = np.random.default_rng(seed)
    feats = {"frame_cls": rng.standard_normal((3, 4)).astype(np.float32),
             "timestamps": np.arange(3, dtype=np.float32)}
    return Extracted(clip_key(path, start, end), str(path), start, end, file_identity(path), 1.5, feats)


def test_commit_then_get_roundtrip_across_shards(tmp_path):
    store = FeatureStore(tmp_path / "store", create=True)
    a, b, c = (_done(tmp_path, f"{n}.mp4", i) for i, n in enumerate("abc"))
    bad = Failure(clip_key(tmp_path / "d.mp4"), str(tmp_path / "d.mp4"), None, None, a.identity, "broken file")
    with store.writing(ENC):
        s1 = store.commit([a, b], [bad], encoder=ENC)
        s2 = store.commit([c], encoder=ENC)
    assert s1 != s2
    with safe_open(store.root / "shards" / s1, framework="np") as fh:
        assert sorted(fh.keys()) == ["0/frame_cls", "0/timestamps", "1/frame_cls", "1/timestamps"]
    got = store.get_many([c.key, a.key, b.key])
    for want, have in zip([c, a, b], got):
        assert set(have) == {"frame_cls", "timestamps"}
        np.testing.assert_array_equal(have["frame_cls"], want.features["frame_cls"])
    assert store.keys() == sorted([a.key, b.key, c.key])
    assert store.keys("failed") == [bad.key]
    assert store.status(bad.key) == "failed" and store.status(a.key) == "ok" and store.status("nope") is None
    assert store.counts() == {"ok": 3, "failed": 1} and len(store) == 4
    e = store.entry(bad.key)
    assert e.error == "broken file" and e.shard is None
    e = store.entry(a.key)
    assert (e.encoder_name, e.encoder_version, e.duration_s, e.slot) == ("enc", "v1", 1.5, 0)
    assert e.size == a.identity.size and e.features == ("frame_cls", "timestamps")
    assert store.encoder == ENC
    with pytest.raises(MissingFeatures, match="broken file") as exc:
        store.get(bad.key)
    assert isinstance(exc.value, TvrError) and isinstance(exc.value, KeyError)
    with pytest.raises(MissingFeatures, match="no entry"):
        store.get("/nope.mp4")
    assert store.verify() == []
    store.close()
    # a second handle (a reader) sees the same thing
    with FeatureStore(tmp_path / "store") as again:
        np.testing.assert_array_equal(again.get(b.key)["timestamps"], b.features["timestamps"])


def test_reextraction_replaces_row_and_drops_superseded_shard(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    a = _done(tmp_path, "a.mp4", 0)
    with store.writing(ENC):
        old = store.commit([a], encoder=ENC)
        new_feats = {"frame_cls": np.ones((2, 4), np.float32)}
        new = store.commit([Extracted(a.key, a.path, None, None, a.identity, 2.0, new_feats)], encoder=ENC)
    assert len(store) == 1
    assert not (store.root / "shards" / old).exists() and (store.root / "shards" / new).exists()
    np.testing.assert_array_equal(store.get(a.key)["frame_cls"], new_feats["frame_cls"])


def test_orphans_and_temp_files_removed_on_open(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    with store.writing(ENC):
        kept = store.commit([_done(tmp_path, "a.mp4", 0)], encoder=ENC)
    store.close()
    shards = tmp_path / "s" / "shards"
    (shards / "20990101-000000-dead.safetensors").write_bytes(b"half a shard")  # renamed, never committed
    (shards / ".x.safetensors.abc.tmp").write_bytes(b"partial")  # killed mid-write
    with FeatureStore(tmp_path / "s") as again:
        assert sorted(p.name for p in shards.iterdir()) == [kept]
        assert again.verify() == []


def test_no_cleanup_while_a_writer_holds_the_lock(tmp_path):
    writer = FeatureStore(tmp_path / "s", create=True)
    with writer.writing(ENC):
        tmp = tmp_path / "s" / "shards" / ".in-flight.tmp"
        tmp.write_bytes(b"being written")
        FeatureStore(tmp_path / "s").close()  # a reader opening now must not delete the writer's file
        assert tmp.exists()
        with pytest.raises(TvrError, match="another process is writing"):
            with FeatureStore(tmp_path / "s").writing(ENC, wait_s=0.2):
                pass
    writer.close()


def test_refuses_a_different_encoder(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    with store.writing(ENC):
        store.commit([_done(tmp_path, "a.mp4", 0)], encoder=ENC)
    with pytest.raises(TvrError, match="'enc', not 'other'"):
        with store.writing(EncoderInfo("other", "v1")):
            pass
    with store.writing(EncoderInfo("enc", "v2")):  # same encoder, new version: allowed
        pass
    assert store.encoder == EncoderInfo("enc", "v2")


def test_is_current_by_stat_or_hash(tmp_path):
    store = FeatureStore(tmp_path / "s", create=True)
    a = _done(tmp_path, "a.mp4", 3)
    with store.writing(ENC):
        store.commit([a], encoder=ENC)
    path = tmp_path / "a.mp4"
    assert store.is_current(path, None, None, "enc", "v1")
    assert not store.is_current(path, None, None, "enc", "v2")
    assert not store.is_current(path, 0.0, 1.0, "enc", "v1")  # a clip is another key
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert store.is_current(path, None, None, "enc", "v1")
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert not store.is_current(path, None, None, "enc", "v1")
    path.write_bytes(b"short")
    assert not store.is_current(path, None, None, "enc", "v1")
    path.unlink()
    assert not store.is_current(path, None, None, "enc", "v1")


def test_content_hash_sees_head_and_tail_of_big_files(tmp_path):
    p = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).bytes(3 * (1 << 20)))
    p.write_bytes(bytes(data))
    h0 = content_hash(p)
    data[-1] ^= 1
    p.write_bytes(bytes(data))
    h1 = content_hash(p)
    data[0] ^= 1
    p.write_bytes(bytes(data))
    assert len({h0, h1, content_hash(p)}) == 3


def test_clip_key_matches_manifest_video_key(tmp_path):
    p = tmp_path / "dir with space" / "v.mp4"
    absolute = str(p.resolve())
    assert clip_key(p) == absolute
    assert clip_key(p, 1.5, 4.0) == ManifestEntry(absolute, "c", start=1.5, end=4.0).video_key == f"{absolute}#1.5-4"
    assert clip_key(tmp_path / "x" / ".." / "dir with space" / "v.mp4", 1.5, 4.0) == f"{absolute}#1.5-4"


def test_not_a_store_and_format_mismatch(tmp_path):
    with pytest.raises(TvrError, match="not a feature store"):
        FeatureStore(tmp_path / "missing")
    FeatureStore(tmp_path / "s", create=True).close()
    with sqlite3.connect(tmp_path / "s" / "store.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'format_version'")
    with pytest.raises(TvrError, match="format 99"):
        FeatureStore(tmp_path / "s")
