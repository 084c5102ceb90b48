"""MMT end to end on tiny real videos: expert streams from the feature store (a video without an
audio track is masked, not an error), `tvr train --method mmt`, `tvr eval`, and `tvr index` /
`tvr search` equal to exhaustive scoring with the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

RATE = 16000
SIZE = 32
N_VIDEOS = 6
WORDS = ("red", "blue", "green", "square", "circle", "beeping", "silent", "moves", "left", "then")
MODEL = {
    "num_frames": 4, "image_size": SIZE, "d_model": 16, "layers": 1, "heads": 2, "ffn": 32, "max_features": 4,
    "text_trainable_layers": 1,
    "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1, "vision_heads": 2},
}


def _make_video(path: Path, seed: int, with_audio: bool) -> None:
    from tvr.io.writer import write_video

    rng = np.random.default_rng(seed)
    frames = np.empty((8, SIZE, SIZE, 3), np.uint8)
    for t in range(8):
        frames[t] = rng.integers(30, 226, 3, dtype=np.uint8)
        x = 2 * t + seed % 5
        frames[t, 8:16, x : x + 8] = rng.integers(0, 255, 3, dtype=np.uint8)  # something moves
    audio = None
    if with_audio:
        t = np.arange(2 * RATE) / RATE
        audio = (0.3 * np.sin(2 * np.pi * (300 + 100 * seed) * t)).astype(np.float32)
    write_video(path, frames, fps=4, audio=audio, audio_rate_hz=RATE)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmt_world")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N_VIDEOS):
        _make_video(root / "videos" / f"v{i}.mp4", i, with_audio=i % 3 != 0)  # v0, v3: no audio track
        for _ in range(2):
            text = " ".join(rng.choice(WORDS, size=4))
            lines.append({"video": f"videos/v{i}.mp4", "caption": text, "split": "train" if i < 4 else "test"})
    (root / "all.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    (root / "cfg.json").write_text(json.dumps({
        "preset": "tiny", "model": MODEL, "train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.0, "workers": 1},
    }))
    return root


def test_streams_are_padded_and_a_missing_audio_track_is_masked(world):
    from tvr.data.batch import VideoInputSpec
    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest

    spec = VideoInputSpec(4, SIZE, streams=("motion", "audio"))
    pairs = load_pairs(read_manifest(world / "all.jsonl"), spec, world / "store", workers=1, progress=False)
    batch = pairs.clips.batch(range(N_VIDEOS))
    names = [Path(k).name for k in pairs.clips.keys]
    audio_mask = batch.features["audio_mask"]
    for row, name in enumerate(names):
        has_audio = int(name[1]) % 3 != 0
        assert bool(audio_mask[row].any()) == has_audio, name
        assert batch.features["motion_mask"][row].any()
    assert batch.features["audio"].shape[-1] == 128 and batch.features["motion"].shape[-1] == 56
    times = batch.features["audio_timestamps"][audio_mask]
    assert torch.all((times > 0) & (times < 3))  # per-second centres of a 2-s clip
    assert (world / "store" / "streams" / "audio" / "store.sqlite").is_file()


def test_one_encoder_with_two_option_sets_is_two_stores_and_two_batch_entries(world, tmp_path):
    from tvr.data.batch import VideoInputSpec
    from tvr.data.pairs import load_pairs
    from tvr.data.streams import stream_store_dir
    from tvr.io.manifest import read_manifest

    spec = VideoInputSpec(4, SIZE, streams=("motion", "motion:grid=2", "audio:n_mels=32"))
    pairs = load_pairs(read_manifest(world / "all.jsonl"), spec, tmp_path / "store", workers=1, progress=False)
    batch = pairs.clips.batch(range(N_VIDEOS))
    assert batch.features["motion"].shape[-1] == 56 and batch.features["motion:grid=2"].shape[-1] == 20
    assert batch.features["audio:n_mels=32"].shape[-1] == 64 and "audio" not in batch.features
    stores = {s: stream_store_dir(tmp_path / "store", s) for s in spec.streams}
    assert stores["motion"] == tmp_path / "store" / "streams" / "motion"  # a plain stream keeps its folder
    assert len(set(stores.values())) == 3 and all((d / "store.sqlite").is_file() for d in stores.values())
    assert stream_store_dir(tmp_path, "motion:size=32,grid=2") == stream_store_dir(tmp_path, "motion:grid=2,size=32")
    # the coarse grid's cells are means of the fine grid's: its first 3·4 values follow from the 3·16
    fine = batch.features["motion"][..., :48].reshape(*batch.features["motion"].shape[:2], 3, 2, 2, 2, 2)
    coarse = fine.mean(dim=(-3, -1)).reshape(*fine.shape[:3], 4)  # [B, K, 3, 4] over the 2×2 blocks
    mask = batch.features["motion_mask"]
    assert torch.equal(mask, batch.features["motion:grid=2_mask"])
    assert torch.allclose(coarse.flatten(2)[mask], batch.features["motion:grid=2"][..., :12][mask], atol=1e-4)


def test_train_eval_index_search_exact(world, run_cli, tmp_path):
    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model

    run = tmp_path / "run"
    r = run_cli("train", world / "all.jsonl", "--method", "mmt", "--out", run, "--config", world / "cfg.json")
    assert r.exit_code == 0, r.stderr
    r = run_cli("eval", world / "all.jsonl", "--checkpoint", run, "--json", "--workers", "1")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n_queries"] == 4 and report["n_gallery"] == 2

    idx = tmp_path / "idx"
    r = run_cli("index", world / "all.jsonl", "--checkpoint", run, "--out", idx, "--workers", "1")
    assert r.exit_code == 0, r.stderr
    queries = ["red square moves left", "blue circle beeping", "silent green then"]
    model = load_model(run)
    m = read_manifest(world / "all.jsonl")
    pairs = load_pairs(m, model.input_spec(), run / "frames", workers=1, progress=False)
    with torch.no_grad():
        scores = score_matrix(model, encode_texts(model, queries, "cpu"), encode_clips(model, pairs.clips, "cpu"))
    names = [Path(k).name for k in pairs.clips.keys]
    for q, text in enumerate(queries):
        r = run_cli("search", idx, text, "-k", str(N_VIDEOS), "--json")
        assert r.exit_code == 0, r.stderr
        hits = json.loads(r.stdout)["hits"]
        got = [(Path(h["video"]).name, h["score"]) for h in hits]
        assert sorted(n for n, _ in got) == sorted(names)
        for name, score in got:
            assert score == pytest.approx(float(scores[q, names.index(name)]), abs=1e-5)
        np.testing.assert_allclose([s for _, s in got], np.sort(scores[q])[::-1], atol=1e-5)


def _trained_weights(world: Path, run_cli, out: Path, manifest: Path, **train) -> dict[str, torch.Tensor]:
    """`tvr train --method mmt` on `manifest` with the world's config and these train values; its weights."""
    from safetensors.torch import load_file

    cfg = json.loads((world / "cfg.json").read_text())
    cfg["train"].update(train)
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps(cfg))
    r = run_cli("train", manifest, "--method", "mmt", "--out", out, "--config", config)
    assert r.exit_code == 0, r.stderr
    return load_file(str(out / "model.safetensors"))


def test_sound_negatives_change_training_only_through_captions_that_name_a_sound(world, run_cli, tmp_path):
    """`train.sound_negatives` adds a loss on the batch's captions that name a sound (this world's
    "beeping" and "silent"): the trained weights differ from a run without it. A world whose captions
    name no sound trains to exactly the same weights with it as without."""
    from tvr.train.sound_negatives import donors

    def train(name: str, weight: float, manifest: Path) -> dict[str, torch.Tensor]:
        return _trained_weights(world, run_cli, tmp_path / name, manifest, sound_negatives=weight)

    lines = [json.loads(x) for x in (world / "all.jsonl").read_text().splitlines()]
    assert donors([x["caption"] for x in lines if x["split"] == "train"])  # the loss has pairs to work on
    off, on = train("off", 0.0, world / "all.jsonl"), train("on", 1.0, world / "all.jsonl")
    assert any(not torch.equal(off[k], on[k]) for k in off)

    quiet = world / "quiet.jsonl"  # the same pairs with the sound words gone
    quiet.write_text("".join(json.dumps({**x, "caption": x["caption"].replace("beeping", "red").replace("silent", "blue")}) + "\n"
                             for x in lines), encoding="utf-8")
    off, on = train("quiet-off", 0.0, quiet), train("quiet-on", 1.0, quiet)
    assert all(torch.equal(off[k], on[k]) for k in off)


def test_order_negatives_reach_mmt_only_with_its_streams_swapped(world, run_cli, tmp_path):
    """MMT reads expert streams beside the frames: `train.order_negatives` alone leaves it exactly as
    trained without them (a swap of the frames alone would be no honest negative), and with
    `train.order_streams` its captions that state an order ("then") change the trained weights."""
    from tvr.train.order_negatives import order_rows

    def train(name: str, **values) -> dict[str, torch.Tensor]:
        return _trained_weights(world, run_cli, tmp_path / name, world / "all.jsonl", **values)

    lines = [json.loads(x) for x in (world / "all.jsonl").read_text().splitlines()]
    assert order_rows([x["caption"] for x in lines if x["split"] == "train"])  # the loss has captions to work on
    off = train("off", order_negatives=0.0)
    frames_only = train("frames-only", order_negatives=1.0)
    swapped = train("streams", order_negatives=1.0, order_streams=True)
    assert all(torch.equal(off[k], frames_only[k]) for k in off)
    assert any(not torch.equal(off[k], swapped[k]) for k in off)
