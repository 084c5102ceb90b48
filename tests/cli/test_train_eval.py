"""`tvr train` / `tvr eval` end to end on a tiny synthetic world, and bad input → one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # the shared tiny world/run
from train_testlib import EPOCHS, METHOD, one_line_error  # noqa: E402


def test_train_writes_checkpoint_and_metrics(trained):
    assert {"config.json", "model.safetensors", "trainer_state.json", "metrics.jsonl"} <= {p.name for p in trained.iterdir()}
    recs = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == list(range(1, EPOCHS + 1))
    assert all("t2v" in r["val"] and r["train_loss"] > 0 for r in recs)


def test_eval_json_by_tag_and_ranks_file(run_cli, world, trained, tmp_path):
    ranks = tmp_path / "ranks.jsonl"
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--json", "--ranks-out", ranks)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == METHOD and doc["split"] == "test" and doc["postproc"] == "none"
    n_test = sum(1 for x in (world / "w" / "test.jsonl").read_text().splitlines() if x.strip())
    assert doc["n_queries"] == n_test and 0 <= doc["t2v"]["R@1"] <= 100
    assert doc["by_tag"] and all("R@1" in v for v in doc["by_tag"].values())
    lines = [json.loads(x) for x in ranks.read_text().splitlines()]
    assert len(lines) == n_test
    assert {"caption", "video", "rank", "top", "tags"} <= set(lines[0])
    assert len(lines[0]["top"]) == min(5, doc["n_gallery"])
    # the rank file agrees with the t2v R@1 of the report
    r1 = 100.0 * sum(x["rank"] <= 1 for x in lines) / len(lines)
    assert r1 == pytest.approx(doc["t2v"]["R@1"])


def test_eval_with_querybank_postproc(run_cli, world, trained):
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--postproc", "is", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["postproc"] == "is" and doc["postproc_params"]["beta"] == 20.0


def test_eval_beta_is_the_inverted_softmax_of_a_hand_computation(run_cli, world, trained):
    """`--beta 2`: t2v equals IS computed here from the model's own scores (β·s − log Σ_bank exp(β·s_bank))."""
    import numpy as np
    from scipy.special import logsumexp

    from tvr.data.pairs import load_pairs
    from tvr.eval.metrics import retrieval_metrics
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model
    from tvr.train.trainer import FRAMES_DIR

    # the train split: the tiny world's test split has a single video, where every ranking is the same
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--split", "train", "--postproc", "is",
                "--beta", "2", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["postproc_params"]["beta"] == 2.0
    m = read_manifest(world / "w" / "all.jsonl")
    model = load_model(trained)
    pairs = load_pairs(m.split("train"), model.input_spec(), trained / FRAMES_DIR, workers=1, progress=False)
    videos = encode_clips(model, pairs.clips, "cpu")
    s = score_matrix(model, encode_texts(model, [e.caption for e in pairs.entries], "cpu"), videos).astype(np.float64)
    bank = score_matrix(model, encode_texts(model, [e.caption for e in m.split("train").entries], "cpu"), videos)

    def inverted_softmax(beta: float) -> dict:
        return retrieval_metrics(beta * s - logsumexp(beta * bank.astype(np.float64), axis=0), list(pairs.video_rows))["t2v"]

    expected, default = inverted_softmax(2.0), inverted_softmax(20.0)
    assert expected["MnR"] != pytest.approx(default["MnR"])  # on this world β changes the ranking
    for key in ("R@1", "R@5", "MdR", "MnR"):
        assert doc["t2v"][key] == pytest.approx(expected[key]), key
    one_line_error(run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--postproc", "is",
                           "--beta", "0"), "--beta", "positive")


def test_manifest_line_without_caption(run_cli, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "a.mp4", "caption": "x"}\n{"video": "b.mp4"}\n')
    one_line_error(run_cli("train", m, "--method", "clip4clip-meanp", "--out", tmp_path / "r"), "m.jsonl:2", "caption")


def test_missing_video_file(run_cli, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "gone.mp4", "caption": "a red circle"}\n{"video": "gone2.mp4", "caption": "b"}\n')
    one_line_error(run_cli("train", m, "--method", "clip4clip-meanp", "--out", tmp_path / "r"), "gone.mp4", "not found")


def test_unknown_method(run_cli, world, tmp_path):
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", "clip5clip", "--out", tmp_path / "r"),
                   "clip5clip", "clip4clip-meanp")


def test_checkpoint_from_another_method(run_cli, world, trained):
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", "clip4clip-meanp", "--out", trained,
                           "--resume"), "clip4clip-meanp", METHOD)


def test_existing_run_without_resume_and_bad_checkpoint(run_cli, world, trained, tmp_path):
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", METHOD, "--out", trained), "--resume")
    one_line_error(run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", tmp_path / "none"), "not found")


def _open_files_under(folder: Path) -> list[str]:
    import os

    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return [t for t in targets if t.startswith(str(folder))]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd (Linux)")
def test_train_and_eval_close_a_frame_store_they_read_from_disk(run_cli, world, trained, tmp_path, monkeypatch):
    """Sets too large to hold in memory (here: every set, the limit at 0) read frames from the store
    during the job; `tvr train` and `tvr eval` close it when they finish, and score as in memory."""
    import tvr.data.clips
    from tvr.train.trainer import FRAMES_DIR

    held = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--json")
    assert held.exit_code == 0, held.stderr
    monkeypatch.setattr(tvr.data.clips, "PRELOAD_LIMIT_BYTES", 0)
    closed: list[bool] = []  # the command closes the store itself: reference counting would close it too, later
    real_close = tvr.data.clips.Clips.close

    def close(self) -> None:
        closed.append(self._store is not None)
        real_close(self)

    monkeypatch.setattr(tvr.data.clips.Clips, "close", close)
    before = _open_files_under(trained / FRAMES_DIR)
    streamed = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--json")
    assert streamed.exit_code == 0, streamed.stderr
    assert json.loads(streamed.stdout)["t2v"] == json.loads(held.stdout)["t2v"]
    assert _open_files_under(trained / FRAMES_DIR) == before and True in closed
    out = tmp_path / "run"
    r = run_cli("train", world / "w" / "all.jsonl", "--method", METHOD, "--config", world / "tiny.json", "--epochs", "1",
                "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert _open_files_under(out / FRAMES_DIR) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd (Linux)")
def test_loaded_pairs_hold_no_open_frame_store(trained, world):
    """A set small enough to be held in memory closes its frame store at once: an SQLite connection
    left for the garbage collector would checkpoint the store's WAL at an arbitrary later moment,
    rewriting a cache another process may be reading. Its batches still equal the store's frames."""
    import numpy as np

    from tvr.data.clips import padded_frames
    from tvr.data.pairs import load_pairs
    from tvr.features.store import FeatureStore
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model
    from tvr.train.trainer import FRAMES_DIR

    def open_store_files() -> list[str]:
        return _open_files_under(trained / FRAMES_DIR)

    model = load_model(trained)
    before = open_store_files()
    pairs = load_pairs(read_manifest(world / "w" / "all.jsonl"), model.input_spec(), trained / FRAMES_DIR,
                       workers=1, progress=False)
    assert open_store_files() == before
    rows = [0, len(pairs.clips) - 1]
    with FeatureStore(trained / FRAMES_DIR) as store:
        expected = padded_frames(store.get_many([pairs.clips.keys[r] for r in rows]), model.input_spec())
    batch = pairs.clips.batch(rows)
    np.testing.assert_array_equal(batch.frame_mask.numpy(), expected[1])
    np.testing.assert_array_equal(batch.frames.permute(0, 1, 3, 4, 2).numpy(), expected[0])
    pairs.clips.close()  # idempotent
