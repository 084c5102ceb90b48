"""ProST: matching against an explicit float64 loop, masking invariance, prototypes, loss, decoders."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tvr.errors import TvrError
from tvr.models import TextBatch, VideoBatch, create, names
from tvr.models import prost as prost_mod
from tvr.models.prost import ProstTextEmb, ProstVideoEmb, PrototypeWeights
from tvr.models.registry import config_from_dict, config_to_dict, make_config

TINY = {
    "num_frames": 5, "image_size": 32, "phrase_prototypes": 6, "object_prototypes": 3, "event_prototypes": 2,
    "backbone": {"embed_dim": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
                 "text_width": 32, "text_layers": 1, "text_heads": 2,
                 "vocabulary": ["red", "circle", "then", "blue", "square", "a", "moves", "left"]},
}
TEXTS = ["red circle", "a blue square moves left then a red circle", "circle then red", "unknown words here"]


def tiny(seed: int = 0, **over):
    torch.manual_seed(seed)
    return create("prost", **{**TINY, **over}).eval()


def video_batch(b: int = 3, t: int = 5, seed: int = 1) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, t, 3, 32, 32), dtype=torch.uint8, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 2:] = False  # 2 real frames
    mask[1, 4:] = False
    return VideoBatch(frames, mask, torch.arange(t, dtype=torch.float32).expand(b, t).clone())


def loop_scores(t: ProstTextEmb, v: ProstVideoEmb, n_o: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's matching written as explicit loops over phrases / frames / objects / events (float64)."""
    ph, ob, ev, s = t.phrases.double(), v.objects.double(), v.events.double(), t.pooled.double()
    op = torch.zeros(len(ph), len(ob), dtype=torch.float64)
    es = torch.zeros_like(op)
    for n in range(len(ph)):
        for j in range(len(ob)):
            total = 0.0
            for i in range(ph.shape[1]):
                best = -float("inf")
                for f in range(ob.shape[1]):
                    if not v.frame_mask[j, f]:
                        continue
                    for o in range(ob.shape[2]):
                        best = max(best, float(ph[n, i] @ ob[j, f, o]))
                total += best
            op[n, j] = total / n_o
            es[n, j] = max(float(s[n] @ ev[j, e]) for e in range(ev.shape[1]))
    return op, es


def random_embs(n=4, v=5, t=6, o=4, p=7, e=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(v, t, generator=g) > 0.4
    mask[:, 0] = True
    objects = F.normalize(torch.randn(v, t, o, d, generator=g), dim=-1)
    objects[~mask] = 1e6 * torch.randn(int((~mask).sum()), o, d, generator=g)  # garbage in padded frames
    te = ProstTextEmb(F.normalize(torch.randn(n, d, generator=g), dim=-1),
                      phrases=F.normalize(torch.randn(n, p, d, generator=g), dim=-1))
    ve = ProstVideoEmb(F.normalize(torch.randn(v, d, generator=g), dim=-1), frame_mask=mask, objects=objects,
                       events=F.normalize(torch.randn(v, e, d, generator=g), dim=-1))
    return te, ve


def test_registered_with_paper_defaults_and_config_errors():
    assert "prost" in names()
    cfg = make_config("prost")
    assert (cfg.phrase_prototypes, cfg.object_prototypes, cfg.event_prototypes, cfg.event_decoder_layers) == (28, 11, 3, 2)
    assert config_from_dict(type(cfg), config_to_dict(cfg)) == cfg
    with pytest.raises(TvrError, match="object_protos"):
        make_config("prost", {"object_protos": 3})
    with pytest.raises(ValueError, match="max_frames"):
        create("prost", **{**TINY, "max_frames": 2})


def test_similarity_equals_explicit_loop_on_random_prototypes(monkeypatch):
    model = tiny(object_prototypes=3)
    te, ve = random_embs()
    op, es = model.branch_scores(te, ve)
    ref_op, ref_es = loop_scores(te, ve, n_o=3)
    torch.testing.assert_close(op.double(), ref_op, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(es.double(), ref_es, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.similarity(te, ve).double(), ref_op + ref_es, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(prost_mod, "SCORE_BLOCK_ELEMENTS", 1)  # one video per block: same numbers
    torch.testing.assert_close(model.similarity(te, ve), op + es, rtol=1e-6, atol=1e-6)


def test_similarity_of_encoded_embeddings_equals_loop_and_prototypes_are_unit():
    model = tiny()
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        v = model.encode_video(video_batch())
        s = model.similarity(t, v)
    assert t.phrases.shape == (4, 6, 32) and v.objects.shape == (3, 5, 4, 32) and v.events.shape == (3, 2, 32)
    valid = v.frame_mask
    torch.testing.assert_close(v.objects[valid].norm(dim=-1), torch.ones(int(valid.sum()), 4))
    torch.testing.assert_close(t.phrases.norm(dim=-1), torch.ones(4, 6))
    torch.testing.assert_close(v.events.norm(dim=-1), torch.ones(3, 2))
    assert torch.all(v.objects[~valid] == 0)
    ref_op, ref_es = loop_scores(t, v, n_o=3)
    torch.testing.assert_close(s.double(), ref_op + ref_es, rtol=1e-5, atol=1e-5)
    # the last object of every frame is the frame's own CLS embedding
    torch.testing.assert_close(v.objects[:, :, -1][valid], v.frames[valid], rtol=1e-5, atol=1e-6)


def test_garbage_in_padded_frames_changes_nothing():
    model = tiny()
    batch = video_batch()
    noisy = video_batch(seed=99)
    noisy.frames[batch.frame_mask] = batch.frames[batch.frame_mask]  # same real frames, new padding
    assert not torch.equal(noisy.frames, batch.frames)
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        a, b = model.encode_video(batch), model.encode_video(noisy)
        sa, sb = model.similarity(t, a), model.similarity(t, b)
    for name in ("pooled", "objects", "events"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6)
    torch.testing.assert_close(sa, sb, rtol=0, atol=1e-6)
    # a video alone (no padding at all) scores as it does inside the padded batch
    with torch.no_grad():
        alone = model.encode_video(VideoBatch(batch.frames[:1, :2], batch.frame_mask[:1, :2], batch.timestamps[:1, :2]))
        s_alone = model.similarity(t, alone)
    torch.testing.assert_close(s_alone[:, 0], sa[:, 0], rtol=1e-5, atol=1e-5)


def test_garbage_in_padded_words_changes_nothing():
    model = tiny()
    with torch.no_grad():
        eot, states, valid = model.backbone.encode_text(TEXTS)
        assert (~valid).any()
        noisy = states.clone()
        noisy[~valid] = 1e6 * torch.randn(int((~valid).sum()), states.shape[-1])
        a = model.phrase_weights(states, valid)
        b = model.phrase_weights(noisy, valid)
        noisy[~valid] = float("nan")
        c = model.phrase_weights(noisy, valid)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    # end to end: a caption scores the same alone as in a batch padded to a longer caption
    with torch.no_grad():
        v = model.encode_video(video_batch())
        both = model.similarity(model.encode_text(TextBatch(TEXTS[:2])), v)
        alone = model.similarity(model.encode_text(TextBatch(TEXTS[:1])), v)
    torch.testing.assert_close(alone[0], both[0], rtol=1e-5, atol=1e-6)


def test_prototype_weights_are_nonnegative_weighted_means():
    torch.manual_seed(3)
    layer = PrototypeWeights(8, 5)
    tokens = torch.randn(2, 7, 8, dtype=torch.float64)
    valid = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    layer = layer.double().requires_grad_(False)
    out = layer(tokens, valid)
    for b in range(2):
        for k in range(5):
            w = [max(float(layer.mlp(tokens[b, i])[k]), 0.0) + 1e-4 if valid[b, i] else 0.0 for i in range(7)]
            expect = sum(w[i] * tokens[b, i] for i in range(7)) / sum(w)
            torch.testing.assert_close(out[b, k], expect, rtol=1e-9, atol=1e-9)


def test_loss_is_mean_of_four_infonce_terms():
    model = tiny()
    with torch.no_grad():
        model.logit_scale.fill_(5.0)  # exp(5) > 100: clamped
        t = model.encode_text(TextBatch(TEXTS[:3]))
        v = model.encode_video(video_batch())
        loss = float(model.loss(t, v))
    op, es = loop_scores(t, v, n_o=3)
    terms = []
    for s in (op * 100.0, es * 100.0):
        for m in (s, s.T):
            terms.append(sum(float(torch.logsumexp(m[i], 0) - m[i, i]) for i in range(3)) / 3)
    assert loss == pytest.approx(sum(terms) / 4, rel=1e-5)


def test_loss_backpropagates_into_both_branches():
    model = tiny().train()
    loss = model.loss(model.encode_text(TextBatch(TEXTS[:3])), model.encode_video(video_batch()))
    loss.backward()
    for p in (model.phrase_weights.mlp[1].weight, model.object_weights.mlp[1].weight, model.event_queries,
              model.frame_queries, model.backbone.visual.conv1.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_frame_decoder_sees_only_its_window():
    model = tiny(frame_window=1)
    g = torch.Generator().manual_seed(4)
    objects = torch.randn(1, 5, 4, 32, generator=g)
    mask = torch.ones(1, 5, dtype=torch.bool)
    changed = objects.clone()
    changed[0, 4] = torch.randn(4, 32, generator=g)  # frame 4 reaches frames 3 and 4 only
    with torch.no_grad():
        a, b = model._frame_decoder(objects, mask), model._frame_decoder(changed, mask)
    torch.testing.assert_close(a[0, :3], b[0, :3], rtol=0, atol=0)
    assert (a[0, 3:] - b[0, 3:]).abs().amax(-1).min() > 1e-6


def test_events_see_frame_order_but_object_phrase_branch_does_not():
    model = tiny()
    with torch.no_grad():
        model.frame_queries.normal_(std=1.0)  # init is small; make positions clearly distinct
    batch = video_batch()
    full = torch.ones_like(batch.frame_mask)
    fwd = VideoBatch(batch.frames, full, batch.timestamps)
    rev = VideoBatch(batch.frames.flip(1), full, batch.timestamps)
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        a, b = model.encode_video(fwd), model.encode_video(rev)
        (op_a, es_a), (op_b, es_b) = model.branch_scores(t, a), model.branch_scores(t, b)
    torch.testing.assert_close(op_a, op_b, rtol=1e-5, atol=1e-5)  # max over frames: order-blind
    assert (es_a - es_b).abs().max() > 1e-4


def test_event_prototypes_blend_decoder_with_frame_cls_mean():
    model = tiny(event_blend=0.0)  # only the meanP part: every event = normalised mean of frame CLS
    batch = video_batch()
    with torch.no_grad():
        v = model.encode_video(batch)
    for i in range(3):
        n = int(batch.frame_mask[i].sum())
        expect = F.normalize(v.frames[i, :n].mean(0), dim=0)
        torch.testing.assert_close(v.events[i], expect.expand(2, -1), rtol=1e-5, atol=1e-6)


def test_frame_similarity_is_object_phrase_per_frame_and_masks_padding():
    model = tiny()
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        v = model.encode_video(video_batch())
        fs = model.frame_similarity(t, v)
        op, _ = model.branch_scores(t, v)
    assert fs.shape == (4, 3, 5)
    assert torch.isinf(fs[:, 0, 2:]).all() and torch.isfinite(fs[:, 2]).all()
    # summing per-phrase maxima frame by frame can only be ≤ the max over all frames, per phrase
    assert torch.all(fs.amax(-1) <= op + 1e-6)


def test_not_an_inner_product_but_gives_candidate_vectors():
    model = tiny()
    assert not model.inner_product
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        v = model.encode_video(video_batch())
    with pytest.raises(NotImplementedError):
        model.gallery_vectors(v)
    c, q = model.candidate_vectors(v), model.candidate_query_vectors(t)
    assert c.shape == (3, 32) and q.shape == (4, 32)
    torch.testing.assert_close(c, F.normalize(v.events.mean(1), dim=-1))


def test_a_crosstvr_first_stage_its_tokens_are_its_clip_towers():
    """ProST under a CrossTVR re-ranker: the frozen text tokens are its text tower's states (as CLIP4Clip's
    are), the frame tokens its vision tower's CLS + patches on the real frames, and a re-ranker scores them."""
    from tvr.models.crosstvr import frozen_frame_tokens, frozen_text_tokens, text_emb_from_tokens, video_emb_from_tokens

    model, batch = tiny(), video_batch()
    tokens, mask = frozen_text_tokens(model, TEXTS)
    frames = frozen_frame_tokens(model, batch)
    with torch.no_grad():
        _, states, valid = model.backbone.encode_text(TEXTS)
        cls, patches = model.frame_tokens(batch.frames, batch.frame_mask.bool())
    torch.testing.assert_close(tokens, states)
    assert torch.equal(mask, valid.bool()) and mask.sum(1).tolist() == [4, 11, 5, 5]  # BOS + words + EOT
    torch.testing.assert_close(frames[:, :, 0], cls)
    torch.testing.assert_close(frames[:, :, 1:], patches)
    assert not frames[0, 2:].any() and frames[0, :2].abs().sum(-1).min() > 0  # padded frames stay zero

    torch.manual_seed(0)
    reranker = create("crosstvr", width=tokens.shape[-1], heads=2, layers=1, num_queries=2, tokens_per_frame=2).eval()
    with torch.no_grad():
        t = text_emb_from_tokens(reranker, tokens, mask)
        v = video_emb_from_tokens(reranker, frames, batch.frame_mask.bool())
        pairs = reranker.score_pairs(t.select(torch.tensor([0, 1, 3])), v.select(torch.tensor([2, 0, 1])))
        full = reranker.similarity(t, v)
    torch.testing.assert_close(pairs, full[[0, 1, 3], [2, 0, 1]])
