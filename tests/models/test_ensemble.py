"""Ensembles: fused scores against a hand computation, the inner-product contract, what is refused,
and the checkpoint written by `write_ensemble` / `tvr ensemble` (round trip, --force, captions)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tvr.data.batch import TextBatch, VideoBatch
from tvr.errors import TvrError
from tvr.models import create
from tvr.models.ensemble import Ensemble, assemble, write_ensemble
from tvr.models.registry import TRAINING_CAPTIONS_FILE, load_model, save_model

TINY = {
    "num_frames": 4, "image_size": 32,
    "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1, "vision_heads": 2,
                 "text_width": 16, "text_layers": 1, "text_heads": 2, "vocabulary": ["red", "blue", "circle", "then"]},
}
TEXTS = ["red circle", "blue circle then red", "circle", "blue"]


def member(method: str, seed: int, logit_scale: float, **extra):
    torch.manual_seed(seed)
    model = create(method, **{**TINY, **extra}).eval()
    model.logit_scale.data.fill_(math.log(logit_scale))
    return model


def videos(n: int = 5, seed: int = 1) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, 4, 3, 32, 32), dtype=torch.uint8, generator=g)
    mask = torch.ones(n, 4, dtype=torch.bool)
    mask[0, 3:] = False
    return VideoBatch(frames, mask, torch.arange(4, dtype=torch.float32).expand(n, 4).clone())


def scores(model, texts=TEXTS, batch=None):
    with torch.no_grad():
        return model.similarity(model.encode_text(TextBatch(texts)), model.encode_video(batch or videos()))


def test_fused_score_is_the_logit_weighted_mean_of_the_members_scores():
    a = member("clip4clip-meanp", 0, 10.0)
    b = member("clip4clip-seqtransf", 1, 30.0, temporal_layers=1)
    for weights, alpha in (((), (0.25, 0.75)), ((3.0, 1.0), (0.5, 0.5))):  # α_m = w_m λ_m / Σ w λ
        ens = assemble([a, b], weights)
        want = alpha[0] * scores(a) + alpha[1] * scores(b)
        got = scores(ens)
        assert torch.allclose(got, want, atol=1e-5), (weights, (got - want).abs().max())
        assert torch.allclose(ens.alphas(), torch.tensor(alpha), atol=1e-6)
        assert math.isclose(float(ens.scale()), 10.0 * (weights or (1, 1))[0] + 30.0 * (weights or (1, 1))[1], rel_tol=1e-5)
        # an inner-product model: the index vectors alone give the same scores
        with torch.no_grad():
            q = ens.query_vectors(ens.encode_text(TextBatch(TEXTS)))
            g = ens.gallery_vectors(ens.encode_video(videos()))
        assert q.shape[1] == 32 and torch.allclose(q @ g.T, want, atol=1e-5)
    assert ens.sees_frame_order  # seqTransf sees order; meanP alone would not
    with torch.no_grad():  # the best moment: the first member's per-frame cosines
        t, v = ens.encode_text(TextBatch(TEXTS)), ens.encode_video(videos())
        want = a.frame_similarity(a.encode_text(TextBatch(TEXTS)), a.encode_video(videos()))
    assert torch.allclose(ens.frame_similarity(t, v), want, atol=1e-6) and torch.isinf(want[:, 0, 3]).all()
    assert not assemble([a, member("clip4clip-meanp", 2, 5.0)]).sees_frame_order


MMT = {"d_model": 16, "layers": 1, "heads": 2, "ffn": 32, "num_frames": 4, "image_size": 32, "max_features": 6,
       "experts": ["appearance", "motion", "audio"], "appearance": "frames", "expert_dims": [8, 5, 7],
       "text_trainable_layers": 1, "loss": "infonce"}


def with_streams(batch: VideoBatch, seed: int = 3) -> VideoBatch:
    """`batch` plus MMT's three expert streams; the second video has no audio."""
    g = torch.Generator().manual_seed(seed)
    n = len(batch)
    features = {name: torch.randn(n, k, d, generator=g) for name, k, d in (("frames", 4, 8), ("motion", 3, 5), ("audio", 3, 7))}
    features["audio_mask"] = torch.ones(n, 3, dtype=torch.bool)
    features["audio_mask"][1] = False
    return VideoBatch(batch.frames, batch.frame_mask, batch.timestamps, features)


def test_an_mmt_member_enters_through_its_exact_index_vectors():
    a = member("clip4clip-meanp", 0, 10.0)
    torch.manual_seed(1)
    mmt = create("mmt", **MMT).eval()
    mmt.logit_scale.data.fill_(math.log(30.0))
    batch = with_streams(videos())
    ens = assemble([a, mmt])
    assert set(ens.input_spec().streams) == set(mmt.input_spec().streams)
    want = 0.25 * scores(a, batch=batch) + 0.75 * scores(mmt, batch=batch)  # MMT's caption-dependent mixture
    assert torch.allclose(scores(ens, batch=batch), want, atol=1e-5)
    with torch.no_grad():  # the index vectors give the same, including the video without audio
        q = ens.query_vectors(ens.encode_text(TextBatch(TEXTS)))
        g = ens.gallery_vectors(ens.encode_video(batch))
    assert torch.allclose(q @ g.T, want, atol=1e-5)
    with torch.no_grad():  # MMT's per-frame outputs are not trained to match: no moment of its own
        only = assemble([mmt, mmt], (1.0, 2.0))
        sims = only.frame_similarity(only.encode_text(TextBatch(TEXTS)), only.encode_video(batch))
    assert sims.shape[-1] == 1 and only.moment_member is None
    margin = create("mmt", **{**MMT, "loss": "margin"}).eval()
    with pytest.raises(ValueError, match=r"members\[1\] \(mmt\) was trained with a loss that never fits"):
        assemble([a, margin])
    assert assemble([a, margin], (1.0, 1.0)).alphas().shape == (2,)  # explicit weights: allowed


def test_members_reading_one_encoder_with_different_options_each_get_their_own_stream():
    torch.manual_seed(4)
    plain = create("mmt", **{**MMT, "experts": ["appearance", "motion"], "expert_dims": [8, 5]}).eval()
    coarse = create("mmt", **{**MMT, "experts": ["appearance", "motion:grid=2"], "expert_dims": [8, 20]}).eval()
    coarse.logit_scale.data.fill_(math.log(30.0))
    ens = assemble([plain, coarse])
    assert ens.input_spec().streams == ("frames", "motion", "motion:grid=2")
    assert assemble([plain, plain]).input_spec().streams == ("frames", "motion")  # the same stream twice: one
    g = torch.Generator().manual_seed(5)
    base = videos()
    features = {"frames": torch.randn(5, 4, 8, generator=g), "motion": torch.randn(5, 3, 5, generator=g),
                "motion:grid=2": torch.randn(5, 3, 20, generator=g)}
    batch = VideoBatch(base.frames, base.frame_mask, base.timestamps, features)
    alpha = ens.alphas()
    want = alpha[0] * scores(plain, batch=batch) + alpha[1] * scores(coarse, batch=batch)
    assert torch.allclose(scores(ens, batch=batch), want, atol=1e-5)
    # each member reads its own stream: changing the coarse one moves only the coarse member's scores
    other = VideoBatch(base.frames, base.frame_mask, base.timestamps,
                       {**features, "motion:grid=2": torch.randn(5, 3, 20, generator=g)})
    assert torch.equal(scores(plain, batch=other), scores(plain, batch=batch))
    assert not torch.allclose(scores(coarse, batch=other), scores(coarse, batch=batch), atol=1e-4)


def test_members_must_be_inner_product_models_that_sample_frames_alike():
    a = member("clip4clip-meanp", 0, 10.0)
    with pytest.raises(ValueError, match=r"members\[1\] is a 'ts2net' model, which is not an inner-product model"):
        assemble([a, member("ts2net", 1, 10.0, shift_blocks=(0,))])
    with pytest.raises(ValueError, match="sample frames differently"):
        assemble([a, member("clip4clip-meanp", 1, 10.0, num_frames=3)])
    with pytest.raises(ValueError, match="at least two members"):
        assemble([a])
    with pytest.raises(ValueError, match="weights has 3 values for 2 members"):
        assemble([a, member("clip4clip-meanp", 1, 10.0)], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="> 0"):
        assemble([a, member("clip4clip-meanp", 1, 10.0)], (1.0, 0.0))
    with pytest.raises(NotImplementedError, match="not trained"):
        ens = assemble([a, member("clip4clip-meanp", 1, 10.0)])
        ens.loss(ens.encode_text(TextBatch(TEXTS)), ens.encode_video(videos()))


def test_written_ensemble_reloads_alone_with_both_runs_captions(tmp_path):
    a, b = member("clip4clip-meanp", 0, 10.0), member("clip4clip-seqtransf", 1, 20.0, temporal_layers=1)
    recipe = {"preset": "cpu-small", "pretrain": {"patch_size": 8}}
    for name, model, caps in (("a", a, ["red circle", "blue"]), ("b", b, ["blue", "circle then red"])):
        save_model(model, tmp_path / name, extra={"training": recipe} if name == "a" else None)
        (tmp_path / name / TRAINING_CAPTIONS_FILE).write_text(json.dumps(caps))
    out = tmp_path / "ens"
    doc = write_ensemble([tmp_path / "a", tmp_path / "b"], out, (1.0, 2.0))
    assert [m["method"] for m in doc["members"]] == ["clip4clip-meanp", "clip4clip-seqtransf"]
    assert [m["share"] for m in doc["members"]] == pytest.approx([0.2, 0.8])
    for d in ("a", "b"):  # the ensemble does not need its members' folders any more
        (tmp_path / d / "model.safetensors").unlink()
    loaded = load_model(out)
    assert isinstance(loaded, Ensemble) and loaded.weights == (1.0, 2.0)
    assert torch.allclose(scores(loaded), 0.2 * scores(a) + 0.8 * scores(b), atol=1e-5)
    assert json.loads((out / TRAINING_CAPTIONS_FILE).read_text()) == ["red circle", "blue", "circle then red"]
    members = json.loads((out / "config.json").read_text())["ensemble_of"]
    assert members[0]["run"] == str(tmp_path / "a") and members[0]["training"] == recipe and "training" not in members[1]


def test_existing_output_needs_force_and_a_failed_fusion_leaves_it_whole(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        save_model(member("clip4clip-meanp", seed, 10.0), tmp_path / name)
    save_model(member("clip4clip-meanp", 2, 10.0, num_frames=3), tmp_path / "c")
    out = tmp_path / "ens"
    write_ensemble([tmp_path / "a", tmp_path / "b"], out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(TvrError, match="exists and is not empty; pass --force"):
        write_ensemble([tmp_path / "b", tmp_path / "a"], out)
    with pytest.raises(TvrError, match="cannot fuse .*sample frames differently"):
        write_ensemble([tmp_path / "a", tmp_path / "c"], out, force=True)
    assert (out / "model.safetensors").read_bytes() == before
    write_ensemble([tmp_path / "b", tmp_path / "a"], out, force=True)
    assert (out / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "ens"]  # nothing left beside it
    for inside in (tmp_path / "a", tmp_path / "a" / "fused", tmp_path):  # never into, inside or around a run
        with pytest.raises(TvrError, match="is, holds or lies inside the run"):
            write_ensemble([tmp_path / "a", tmp_path / "b"], inside, force=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(TvrError, match="is not a tvr checkpoint; --force replaces only"):
        write_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "notes", force=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    assert (tmp_path / "a" / "model.safetensors").is_file()
