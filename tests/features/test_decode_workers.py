import time

import numpy as np
from feature_helpers import crash_or_decode, hang_or_decode, make_video, simple_decode

from tvr.features.workers import DecodePool, DecodeTask, PoolConfig
from tvr.io.decoded import DecodeSpec

SPEC = DecodeSpec(num_frames=3)


def _run(decode_fn, tasks, **cfg):
    pool = DecodePool(decode_fn, SPEC, PoolConfig(**cfg))
    return {r.task_id: r for r in pool.imap(tasks)}


def test_every_task_answered_once_with_the_decoded_frames(tmp_path):
    paths = [make_video(tmp_path / f"v{i}.mp4", seed=i) for i in range(5)]
    (tmp_path / "empty.mp4").write_bytes(b"")
    paths.append(tmp_path / "empty.mp4")
    results = _run(simple_decode, [DecodeTask(i, str(p)) for i, p in enumerate(paths)], workers=2, timeout_s=30)
    assert sorted(results) == list(range(6))
    for i, p in enumerate(paths[:5]):
        want = simple_decode(p, SPEC, None, None)
        np.testing.assert_array_equal(results[i].video.frames, want.frames)
        assert results[i].error is None
    assert results[5].video is None and results[5].error  # names what PyAV said about the empty file


def test_hanging_decode_is_killed_and_the_rest_finishes(tmp_path):
    paths = [make_video(tmp_path / f"v{i}.mp4", seed=i) for i in range(3)]
    paths.insert(1, make_video(tmp_path / "hang.mp4", seed=9))
    t0 = time.monotonic()
    results = _run(hang_or_decode, [DecodeTask(i, str(p)) for i, p in enumerate(paths)], workers=2, timeout_s=1.5)
    assert time.monotonic() - t0 < 15
    assert "timed out after 1.5 s" in results[1].error and results[1].video is None
    assert all(results[i].video is not None for i in (0, 2, 3))


def test_crashing_decoder_process_is_replaced(tmp_path):
    paths = [make_video(tmp_path / "crash.mp4", seed=1)] + [make_video(tmp_path / f"v{i}.mp4", seed=i) for i in range(3)]
    results = _run(crash_or_decode, [DecodeTask(i, str(p)) for i, p in enumerate(paths)], workers=1, timeout_s=30)
    assert "decoder process died (signal 11)" in results[0].error
    assert all(results[i].video is not None for i in (1, 2, 3))


def test_unusable_decode_function_is_an_error_not_a_hang(tmp_path):
    pool = DecodePool(lambda *a: None, SPEC, PoolConfig(workers=1, timeout_s=5))  # not importable by workers
    t0 = time.monotonic()
    try:
        list(pool.imap([DecodeTask(0, str(tmp_path / "x.mp4"))]))
    except Exception as exc:  # noqa: BLE001 - pickling error type differs across Python versions
        assert "lambda" in str(exc) or "pickle" in str(exc).lower()
    else:
        raise AssertionError("expected an error")
    assert time.monotonic() - t0 < 10
