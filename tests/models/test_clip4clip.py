"""CLIP4Clip baselines: masking invariance, pooling against a hand computation, shapes, registry."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tvr.errors import TvrError, UnknownName
from tvr.models import TextBatch, VideoBatch, create, names
from tvr.models.registry import build, config_from_dict, make_config

TINY = {
    "num_frames": 4, "image_size": 32,
    "backbone": {"embed_dim": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
                 "text_width": 32, "text_layers": 1, "text_heads": 2, "vocabulary": ["red", "circle", "then"]},
}


def tiny(method: str, seed: int = 0):
    torch.manual_seed(seed)
    extra = {"temporal_layers": 2} if method.endswith("seqtransf") else {}
    return create(method, **TINY, **extra).eval()


def video_batch(b: int = 3, t: int = 4, seed: int = 1) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, t, 3, 32, 32), dtype=torch.uint8, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 2:] = False
    mask[1, 3:] = False
    return VideoBatch(frames, mask, torch.arange(t, dtype=torch.float32).expand(b, t).clone())


def test_registry_lists_both_baselines_and_rejects_unknown():
    assert {"clip4clip-meanp", "clip4clip-seqtransf"} <= set(names())
    with pytest.raises(UnknownName, match="nope"):
        create("nope")


def test_config_errors_name_the_field():
    with pytest.raises(TvrError, match="vision_widht"):
        make_config("clip4clip-meanp", {"backbone": {"vision_widht": 3}})
    with pytest.raises(TvrError, match="num_frames"):
        make_config("clip4clip-meanp", {"num_frames": "many"})
    cfg = make_config("clip4clip-seqtransf", TINY)
    assert cfg.backbone.vocabulary == ("red", "circle", "then") and cfg.temporal_layers == 4
    with pytest.raises(ValueError, match="frame_position_std"):
        create("clip4clip-seqtransf", **TINY, frame_position_std=-1.0)


def test_backbone_image_size_from_scratch_sets_the_model_size_or_names_the_bad_value():
    from tvr.models.backbone import adapt_to_backbone

    base = make_config("clip4clip-meanp", TINY)
    sized = make_config("clip4clip-meanp", {**TINY, "backbone": {**TINY["backbone"], "image_size": 48}})
    assert adapt_to_backbone(base, ["red circle"]).image_size == 32
    adapted = adapt_to_backbone(sized, ["red circle"])
    assert adapted.image_size == 48 and build("clip4clip-meanp", adapted).input_spec().image_size == 48
    off_grid = make_config("clip4clip-meanp", {**TINY, "backbone": {**TINY["backbone"], "image_size": 44}})
    with pytest.raises(TvrError, match="backbone.image_size 44 is not a multiple of backbone.patch_size 8"):
        adapt_to_backbone(off_grid, ["red circle"])
    with pytest.raises(ValueError, match="backbone.image_size is 48 but the model's image_size is 32"):
        build("clip4clip-meanp", sized)  # not adapted: the two sizes disagree
    with pytest.raises(TvrError, match="image_size"):
        make_config("clip4clip-meanp", {**TINY, "backbone": {**TINY["backbone"], "image_size": 4}})


@pytest.mark.parametrize("method", ["clip4clip-meanp", "clip4clip-seqtransf"])
def test_garbage_in_padded_frames_changes_nothing(method):
    model = tiny(method)
    batch = video_batch()
    noisy = video_batch(seed=99)
    noisy.frames[batch.frame_mask] = batch.frames[batch.frame_mask]  # same real frames, new padding
    assert not torch.equal(noisy.frames, batch.frames)
    with torch.no_grad():
        a, b = model.encode_video(batch), model.encode_video(noisy)
    torch.testing.assert_close(a.pooled, b.pooled, rtol=0, atol=1e-6)
    assert a.frames.shape == (3, 4, 32) and a.pooled.shape == (3, 32)
    assert torch.all(a.frames[~batch.frame_mask] == 0)


def test_meanp_is_normalised_mean_of_normalised_frames():
    model = tiny("clip4clip-meanp")
    batch = video_batch()
    with torch.no_grad():
        raw = model.backbone.encode_frames(batch.frames, batch.frame_mask).double()
        emb = model.encode_video(batch)
    for i in range(3):
        n = int(batch.frame_mask[i].sum())
        expect = F.normalize(F.normalize(raw[i, :n], dim=-1).mean(0), dim=0)
        torch.testing.assert_close(emb.pooled[i].double(), expect, rtol=1e-5, atol=1e-6)
    # one video alone gives the same vector as inside a padded batch
    with torch.no_grad():
        alone = model.encode_video(VideoBatch(batch.frames[:1, :2], batch.frame_mask[:1, :2], batch.timestamps[:1, :2]))
    torch.testing.assert_close(alone.pooled[0], emb.pooled[0], rtol=1e-5, atol=1e-6)


def test_seqtransf_temporal_order_matters_and_shapes():
    torch.manual_seed(0)
    model = create("clip4clip-seqtransf", **TINY, temporal_layers=2, frame_position_std=1.0).eval()
    assert 0.8 < float(model.frame_position.weight.detach().std()) < 1.2  # the init follows the config
    assert float(tiny("clip4clip-seqtransf").frame_position.weight.detach().std()) < 0.012  # default 0.01
    batch = video_batch()
    rev = VideoBatch(batch.frames.flip(1), torch.ones_like(batch.frame_mask), batch.timestamps)
    fwd = VideoBatch(batch.frames, torch.ones_like(batch.frame_mask), batch.timestamps)
    with torch.no_grad():
        a, b = model.encode_video(fwd), model.encode_video(rev)
        ma = tiny("clip4clip-meanp")
        ma.backbone.load_state_dict(model.backbone.state_dict())
        c, d = ma.encode_video(fwd), ma.encode_video(rev)
    torch.testing.assert_close(c.pooled, d.pooled, rtol=1e-5, atol=1e-6)  # meanP: order-blind
    assert (a.pooled - b.pooled).abs().max() > 1e-4  # seqTransf: position embeddings see order
    assert a.frames.shape == (3, 4, 32)
    torch.testing.assert_close(a.pooled.norm(dim=-1), torch.ones(3))


@pytest.mark.parametrize("method", ["clip4clip-meanp", "clip4clip-seqtransf"])
def test_similarity_is_inner_product_of_index_vectors(method):
    model = tiny(method)
    with torch.no_grad():
        t = model.encode_text(TextBatch(["red circle", "circle then red", "unknown words here"]))
        v = model.encode_video(video_batch())
        s = model.similarity(t, v)
        fs = model.frame_similarity(t, v)
    assert model.inner_product
    torch.testing.assert_close(s, model.query_vectors(t) @ model.gallery_vectors(v).T)
    assert s.shape == (3, 3) and fs.shape == (3, 3, 4)
    assert torch.isinf(fs[:, 0, 2:]).all() and torch.isfinite(fs[:, 2]).all()
    assert float(s.abs().max()) <= 1.0 + 1e-5


def test_loss_matches_brute_force_loop():
    model = tiny("clip4clip-meanp")
    with torch.no_grad():
        model.logit_scale.fill_(5.0)  # exp(5) = 148 > 100: the clamp must apply
        t = model.encode_text(TextBatch(["red circle", "circle then red", "red"]))
        v = model.encode_video(video_batch())
        loss = float(model.loss(t, v))
    s = (t.pooled.double() @ v.pooled.double().T) * 100.0
    n = s.shape[0]
    total = 0.0
    for i in range(n):
        row = torch.logsumexp(s[i], 0) - s[i, i]
        col = torch.logsumexp(s[:, i], 0) - s[i, i]
        total += float(row + col) / 2
    assert loss == pytest.approx(total / n, rel=1e-5)


def test_untrained_word_model_without_vocabulary_is_a_clear_error():
    model = build("clip4clip-meanp", make_config("clip4clip-meanp", {**TINY, "backbone": {**TINY["backbone"], "vocabulary": []}}))
    with pytest.raises(TvrError, match="vocabulary"):
        model.encode_text(TextBatch(["red"]))


def test_config_round_trip_through_json():
    from tvr.models.registry import config_to_dict

    cfg = make_config("clip4clip-seqtransf", TINY)
    assert config_from_dict(type(cfg), config_to_dict(cfg)) == cfg


def test_minilm_text_side_trains_one_step():
    """The fine-tunable MiniLM path: padding-invariant pooled text, and one AdamW step moves MiniLM."""
    cfg = {**TINY, "backbone": {**TINY["backbone"], "text_encoder": "minilm", "vocabulary": []}}
    torch.manual_seed(0)
    model = create("clip4clip-meanp", **cfg).eval()
    caps = ["a red circle", "a small blue square moves left, then a green triangle appears", "red"]
    with torch.no_grad():
        both = model.encode_text(TextBatch(caps))
        alone = model.encode_text(TextBatch(caps[:1]))
        ids, mask = model.backbone._tokenizer(caps[:1], 32)
        states, _ = model.backbone.minilm(ids, mask)
        ref = model.backbone.text_proj(states[0, : int(mask.sum())].double().mean(0).float())
    torch.testing.assert_close(alone.pooled[0], both.pooled[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both.pooled[0], F.normalize(ref, dim=-1), rtol=1e-4, atol=1e-5)
    assert both.tokens.shape[:2] == both.token_mask.shape and both.pooled.shape == (3, 32)

    model.train()
    bert = model.backbone.minilm.bert
    before = {n: p.detach().clone() for n, p in bert.named_parameters()}
    proj_before = model.backbone.text_proj.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model.loss(model.encode_text(TextBatch(caps)), model.encode_video(video_batch()))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    moved = [n for n, p in bert.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > 0.9 * len(before), "MiniLM must be fine-tuned, not frozen"
    assert not torch.equal(model.backbone.text_proj.weight, proj_before)


@pytest.mark.parametrize("method", ["clip4clip-meanp", "clip4clip-seqtransf"])
def test_text_batches_of_different_lengths_concatenate(method):
    """The evaluator encodes captions in batches and concatenates them: token widths must agree."""
    from tvr.models.encode import encode_texts

    model = tiny(method)
    caps = ["red", "red circle then red circle then red", "circle"]
    split = encode_texts(model, caps, "cpu", batch_size=1)
    whole = encode_texts(model, caps, "cpu")
    torch.testing.assert_close(split.pooled, whole.pooled, rtol=1e-5, atol=1e-6)
    assert split.tokens.shape == whole.tokens.shape
