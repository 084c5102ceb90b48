"""TS2-Net: every mechanism against a brute-force reference (float64 loops on tiny inputs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tvr.errors import TvrError
from tvr.models import TextBatch, VideoBatch, VideoEmb, create
from tvr.models.registry import config_from_dict, config_to_dict, load_model, make_config, save_model
from tvr.models.topk import PerturbedTopK, hard_top_k, hard_top_k_indices, perturbed_top_k
from tvr.models.ts2net import frame_weighted_score, neighbour_rows, shift_tokens

TINY = {
    "num_frames": 4, "image_size": 32, "temporal_layers": 1, "shift_stride": 7,
    "backbone": {"embed_dim": 32, "patch_size": 4, "vision_width": 32, "vision_layers": 3, "vision_heads": 2,
                 "text_width": 32, "text_layers": 1, "text_heads": 2, "vocabulary": ["red", "circle", "then"]},
}  # 8×8 = 64 patches: shift positions 1, 8, …, 64 and 4, 11, …, 60
TEXTS = ["red circle", "circle then red", "red", "then then circle red"]


def tiny(seed: int = 0, **over):
    torch.manual_seed(seed)
    return create("ts2net", **{**TINY, **over}).eval()


def video_batch(b: int = 3, t: int = 4, seed: int = 1) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, t, 3, 32, 32), dtype=torch.uint8, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 2:] = False  # padding at the end
    mask[1, 1] = False  # a hole: frames 0 and 2 are not neighbours of anything real
    return VideoBatch(frames, mask, torch.arange(t, dtype=torch.float32).expand(b, t).clone())


# -- perturbed / hard top-k -----------------------------------------------------------------------
def test_hard_top_k_is_sorted_brute_force_and_deterministic():
    scores = torch.randn(5, 11, generator=torch.Generator().manual_seed(0))
    idx = hard_top_k_indices(scores, 3)
    for b in range(5):
        expect = sorted(sorted(range(11), key=lambda i: -float(scores[b, i]))[:3])
        assert idx[b].tolist() == expect
    assert torch.equal(idx, hard_top_k_indices(scores.clone(), 3))
    onehot = hard_top_k(scores, 3)
    assert onehot.shape == (5, 3, 11) and torch.equal(onehot.argmax(-1), idx)
    with pytest.raises(ValueError):
        hard_top_k_indices(scores, 12)


def test_perturbed_top_k_forward_is_mean_of_hard_one_hots_under_the_same_noise():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 9, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 50, 9, generator=g, dtype=torch.float64)
    sigma = 0.3
    out = PerturbedTopK.apply(scores, noise, 3, sigma)
    expect = torch.zeros(4, 3, 9, dtype=torch.float64)
    for b in range(4):
        for s in range(50):
            noisy = [float(scores[b, i] + sigma * noise[b, s, i]) for i in range(9)]
            chosen = sorted(sorted(range(9), key=lambda i: -noisy[i])[:3])
            for j, i in enumerate(chosen):
                expect[b, j, i] += 1.0 / 50
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(out.sum(-1), torch.ones(4, 3, dtype=torch.float64))


def test_perturbed_top_k_backward_is_the_estimator_formula():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(3, 40, 7, generator=g, dtype=torch.float64)
    upstream = torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    sigma = 0.5
    (PerturbedTopK.apply(scores, noise, 2, sigma) * upstream).sum().backward()
    # explicit estimator: J[b] = E_s[Y_s ⊗ Z_s] / σ, a [k, N, N] tensor; grad = Σ_{j,d} g[j,d] J[j,d,:]
    expect = torch.zeros(3, 7, dtype=torch.float64)
    for b in range(3):
        jac = torch.zeros(2, 7, 7, dtype=torch.float64)
        for s in range(40):
            idx = hard_top_k_indices(scores[b].detach() + sigma * noise[b, s], 2)
            y = F.one_hot(idx, 7).double()  # [k, N]
            jac += torch.einsum("jd,e->jde", y, noise[b, s])
        jac /= 40 * sigma
        expect[b] = torch.einsum("jd,jde->e", upstream[b], jac)
    torch.testing.assert_close(scores.grad, expect)


def test_perturbed_top_k_tends_to_hard_top_k_for_small_sigma_and_is_seeded():
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    soft = perturbed_top_k(scores, 2, 20, 1e-4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(soft, hard_top_k(scores, 2))
    a = perturbed_top_k(scores, 2, 20, 2.0, torch.Generator().manual_seed(1))
    b = perturbed_top_k(scores, 2, 20, 2.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# -- token shift ----------------------------------------------------------------------------------
def test_neighbour_rows_and_shift_move_exactly_the_specified_tokens():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    real = [(b, t) for b in range(3) for t in range(4) if mask[b, t]]
    n_tok = 17
    x = torch.randn(len(real), n_tok, 5)
    from_prev, from_next = torch.tensor([1, 8, 15]), torch.tensor([4, 11])
    prev, nxt = neighbour_rows(mask)
    out = shift_tokens(x, prev, nxt, from_prev, from_next)
    for n, (b, t) in enumerate(real):
        for p in range(n_tok):
            src = (b, t)
            if p in (1, 8, 15) and (b, t - 1) in real:
                src = (b, t - 1)
            elif p in (4, 11) and (b, t + 1) in real:
                src = (b, t + 1)
            assert torch.equal(out[n, p], x[real.index(src), p]), (b, t, p)
    assert torch.equal(out[:, 0], x[:, 0])  # CLS never moves


def _block_io(model, batch):
    """Run encode_video recording, per ViT block: block input x, attention input, attention output,
    and the input of the second norm (= residual after attention)."""
    rec = {}
    hooks = []
    for i, block in enumerate(model.backbone.visual.blocks):
        hooks.append(block.register_forward_pre_hook(lambda m, a, i=i: rec.__setitem__((i, "x"), a[0].detach())))
        hooks.append(block.ln_1.register_forward_pre_hook(lambda m, a, i=i: rec.__setitem__((i, "in"), a[0].detach())))
        hooks.append(block.attn.register_forward_hook(lambda m, a, o, i=i: rec.__setitem__((i, "attn"), o.detach())))
        hooks.append(block.ln_2.register_forward_pre_hook(lambda m, a, i=i: rec.__setitem__((i, "res"), a[0].detach())))
    with torch.no_grad():
        model.encode_video(batch)
    for h in hooks:
        h.remove()
    return rec


def test_token_shift_only_in_the_last_two_blocks_on_the_attention_input_only():
    model = tiny()
    batch = video_batch()
    rec = _block_io(model, batch)
    mask = batch.frame_mask
    real = [(b, t) for b in range(3) for t in range(4) if mask[b, t]]
    prev_set, next_set = set(range(1, 65, 7)), set(range(4, 65, 7))
    assert 1 in prev_set and 64 in prev_set and 60 in next_set and 0 not in prev_set | next_set
    for i in range(3):
        x, a = rec[(i, "x")], rec[(i, "in")]
        assert x.shape == (len(real), 65, 32)  # only real frames go through the ViT
        torch.testing.assert_close(rec[(i, "res")], x + rec[(i, "attn")])  # residual: unshifted x
        if i == 0:  # not a shift block
            assert torch.equal(a, x)
            continue
        moved = 0
        for n, (b, t) in enumerate(real):
            for p in range(65):
                src = n
                if p in prev_set and (b, t - 1) in real:
                    src = real.index((b, t - 1))
                elif p in next_set and (b, t + 1) in real:
                    src = real.index((b, t + 1))
                assert torch.equal(a[n, p], x[src, p]), (i, b, t, p)
                moved += src != n
        assert moved > 0
    # the hooks are removed after the forward pass
    assert all(block.attn_input_hook is None for block in model.backbone.visual.blocks)


def test_shift_blocks_config_selects_blocks():
    model = tiny(shift_blocks=(0,))
    rec = _block_io(model, video_batch())
    assert not torch.equal(rec[(0, "in")], rec[(0, "x")])
    assert torch.equal(rec[(1, "in")], rec[(1, "x")]) and torch.equal(rec[(2, "in")], rec[(2, "x")])


# -- token selection ------------------------------------------------------------------------------
def test_selection_keeps_cls_and_the_top_k_scored_patches_in_spatial_order():
    model = tiny()
    batch = video_batch()
    with torch.no_grad():
        tokens = model.frame_tokens(batch.frames, batch.frame_mask)  # [N, 65, D]
        scores = model.scorer(tokens)
        selected = model.select_tokens(tokens)
    assert selected.shape == (tokens.shape[0], 4, 32)
    for n in range(tokens.shape[0]):
        best = sorted(sorted(range(64), key=lambda i: -float(scores[n, i]))[:3])
        assert torch.equal(selected[n, 0], tokens[n, 0])
        for j, i in enumerate(best):
            assert torch.equal(selected[n, 1 + j], tokens[n, 1 + i])


def test_scorer_sees_patch_and_cls_features():
    model = tiny()
    tokens = torch.randn(2, 65, 32)
    with torch.no_grad():
        base = model.scorer(tokens)
        other_cls = tokens.clone()
        other_cls[:, 0] += torch.randn(32)  # not a constant: LayerNorm removes those
        moved_patch = tokens.clone()
        moved_patch[:, 5] += torch.randn(32)
        s_cls, s_patch = model.scorer(other_cls), model.scorer(moved_patch)
    assert (s_cls - base).abs().min() > 0  # every patch's score depends on its frame's CLS
    diff = (s_patch - base).abs()
    assert diff[:, 4].min() > 0 and diff[:, [i for i in range(64) if i != 4]].max() == 0  # and on itself only


def test_inference_is_deterministic_and_perturbed_mode_is_seeded():
    batch = video_batch()
    hard = tiny()
    with torch.no_grad():
        a, b = hard.encode_video(batch), hard.encode_video(batch)
    assert torch.equal(a.frames, b.frames)
    pert = tiny(selection="perturbed", selection_seed=5)
    pert.load_state_dict(hard.state_dict())
    with torch.no_grad():
        c, d = pert.encode_video(batch), pert.encode_video(batch)
    assert torch.equal(c.frames, d.frames)
    assert not torch.equal(a.frames, c.frames)  # soft selections differ from hard ones


def test_training_gradient_reaches_the_scorer_through_perturbed_top_k():
    model = tiny().train()
    batch = video_batch()
    loss = model.loss(model.encode_text(TextBatch(TEXTS[:3])), model.encode_video(batch))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.scorer.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


# -- padding never leaks --------------------------------------------------------------------------
@pytest.mark.parametrize("selection", ["hard", "perturbed"])
def test_garbage_in_padded_frames_changes_nothing(selection):
    model = tiny(selection=selection)
    batch = video_batch()
    noisy = video_batch(seed=99)
    noisy.frames[batch.frame_mask] = batch.frames[batch.frame_mask]
    noisy.frame_mask = batch.frame_mask
    assert not torch.equal(noisy.frames, batch.frames)
    with torch.no_grad():
        a, b = model.encode_video(batch), model.encode_video(noisy)
        t = model.encode_text(TextBatch(TEXTS))
    assert torch.equal(a.frames, b.frames) and torch.equal(a.pooled, b.pooled)
    assert torch.all(a.frames[~batch.frame_mask] == 0)
    torch.testing.assert_close(model.similarity(t, a), model.similarity(t, b), rtol=0, atol=0)


def test_video_alone_equals_video_inside_a_padded_batch():
    model = tiny()
    batch = video_batch()
    with torch.no_grad():
        full = model.encode_video(batch)
        alone = model.encode_video(VideoBatch(batch.frames[:1, :2], batch.frame_mask[:1, :2], batch.timestamps[:1, :2]))
    torch.testing.assert_close(alone.frames[0], full.frames[0, :2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone.pooled[0], full.pooled[0], rtol=1e-5, atol=1e-6)


def test_padded_words_never_influence_a_score():
    model = tiny()
    with torch.no_grad():
        v = model.encode_video(video_batch())
        alone = model.similarity(model.encode_text(TextBatch(["red"])), v)
        padded = model.similarity(model.encode_text(TextBatch(["red", "then then circle red red circle"])), v)
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-5, atol=1e-6)


def test_garbage_in_padded_frame_embeddings_changes_no_score():
    model = tiny()
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        v = model.encode_video(video_batch())
    junk = v.frames.clone()
    junk[~v.frame_mask] = torch.randn(int((~v.frame_mask).sum()), 32) * 50
    v2 = VideoEmb(v.pooled, junk, v.frame_mask, v.timestamps)
    assert torch.equal(model.similarity(t, v), model.similarity(t, v2))


# -- similarity -----------------------------------------------------------------------------------
def test_similarity_equals_brute_force_frame_weighted_loop():
    model = tiny()
    with torch.no_grad():
        t = model.encode_text(TextBatch(TEXTS))
        v = model.encode_video(video_batch())
        got = model.similarity(t, v)
    assert got.shape == (4, 3)
    for q in range(4):
        for g in range(3):
            text = t.pooled[q].double()
            cos = []
            for f in range(4):
                if v.frame_mask[g, f]:
                    frame = v.frames[g, f].double()
                    cos.append(float(text @ frame / (text.norm() * frame.norm())))
            norm = math.sqrt(sum(c * c for c in cos))
            w = [math.exp(4 * c / norm) for c in cos]
            score = sum(wi * c for wi, c in zip(w, cos)) / sum(w)
            assert float(got[q, g]) == pytest.approx(score, abs=1e-5)


def test_frame_weighted_score_handles_all_zero_cosines():
    s = frame_weighted_score(torch.zeros(1, 1, 3), torch.tensor([[True, True, False]]))
    assert torch.equal(s, torch.zeros(1, 1))


def test_not_an_inner_product_candidates_are_mean_pooled_frames():
    model = tiny()
    with torch.no_grad():
        v = model.encode_video(video_batch())
    assert not model.inner_product
    with pytest.raises(NotImplementedError):
        model.gallery_vectors(v)
    for g in range(3):
        m = v.frame_mask[g]
        expect = F.normalize(v.frames[g, m].double().mean(0), dim=0)
        torch.testing.assert_close(model.candidate_vectors(v)[g].double(), expect, rtol=1e-5, atol=1e-6)


# -- config and checkpoints -----------------------------------------------------------------------
def test_config_errors_and_round_trip(tmp_path):
    cfg = make_config("ts2net", TINY)
    assert cfg.top_k == 3 and cfg.shift_blocks == (-2, -1) and cfg.perturb_sigma == 0.05
    assert config_from_dict(type(cfg), config_to_dict(cfg)) == cfg
    with pytest.raises(TvrError, match="selection"):
        make_config("ts2net", {"selection": "soft"})
    with pytest.raises(TvrError, match="top_k"):
        tiny(top_k=65)
    with pytest.raises(TvrError, match="shift_blocks"):
        tiny(shift_blocks=(3,))
    model = tiny()
    save_model(model, tmp_path / "ck")
    back = load_model(tmp_path / "ck", method="ts2net")
    with torch.no_grad():
        t = TextBatch(TEXTS)
        a = model.similarity(model.encode_text(t), model.encode_video(video_batch()))
        b = back.similarity(back.encode_text(t), back.encode_video(video_batch()))
    torch.testing.assert_close(a, b)


def _official_shift(x: torch.Tensor, frames: int, n_div: int = 7) -> torch.Tensor:
    """The official TS2-Net shift (modules/until_module.py, PatchShiftModule), written out as loops:
    x [B·T, L, W] of full clips; fold = L // n_div; tokens 1, 1+fold, … from frame t−1, then tokens
    4, 4+fold, … from frame t+1 (written second, so it wins where the two overlap)."""
    n, length, _ = x.shape
    fold = length // n_div
    out = x.clone()
    for row in range(n):
        t = row % frames
        for p in range(1, length, fold):
            if t > 0:
                out[row, p] = x[row - 1, p]
        for p in range(4, length, fold):
            if t < frames - 1:
                out[row, p] = x[row + 1, p]
    return out


@pytest.mark.parametrize(("image_size", "patch_size", "stride"), [(32, 8, 2), (56, 8, 7), (112, 8, 28), (24, 8, 1)])
def test_default_shift_stride_follows_the_token_count_like_the_official_code(image_size, patch_size, stride):
    """1+16 tokens → stride 2, 1+49 → 7 (ViT-B/32), 1+196 → 28 (ViT-B/16), 1+9 → 1 (sets overlap: t+1 wins)."""
    model = tiny(image_size=image_size, shift_stride=None, backbone={**TINY["backbone"], "patch_size": patch_size})
    n_tokens = (image_size // patch_size) ** 2 + 1
    assert model.from_prev.tolist() == list(range(1, n_tokens, stride))
    assert model.from_next.tolist() == list(range(4, n_tokens, stride))
    frames = 4
    x = torch.randn(2 * frames, n_tokens, 6)
    prev, nxt = neighbour_rows(torch.ones(2, frames, dtype=torch.bool))
    assert torch.equal(shift_tokens(x, prev, nxt, model.from_prev, model.from_next), _official_shift(x, frames))
