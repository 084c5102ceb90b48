"""CrossTVR re-ranker: token selection against a loop, masking invariance, sharing switch, pair scoring."""

from __future__ import annotations

import pytest
import torch

from tvr.models.crosstvr import (
    CrossTvrConfig,
    CrossTvrReranker,
    TokenSelector,
    text_emb_from_tokens,
    video_emb_from_tokens,
)

D = 16


def make(**over) -> CrossTvrReranker:
    torch.manual_seed(0)
    cfg = dict(width=D, heads=2, num_queries=3, layers=2, tokens_per_frame=3, num_frames=4)
    return CrossTvrReranker(CrossTvrConfig(**{**cfg, **over})).eval()


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(3, 6, D, generator=g)
    text_mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 2 + [0] * 4]).bool()
    video = torch.randn(3, 4, 7, D, generator=g)  # CLS + 6 patches per frame
    frame_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
    return text, text_mask, video, frame_mask


def scores(model, text, text_mask, video, frame_mask):
    with torch.no_grad():
        t = text_emb_from_tokens(model, text, text_mask)
        v = video_emb_from_tokens(model, video, frame_mask)
        return model.score_pairs(t, v)


def test_selector_matches_a_loop():
    torch.manual_seed(3)
    sel = TokenSelector(D, keep=3, keep_cls=True).eval()
    x = torch.randn(2, 3, 7, D)
    out = sel(x)
    assert out.shape == (2, 3, 3, D)
    with torch.no_grad():
        for b in range(2):
            for t in range(3):
                cls, patches = x[b, t, 0], x[b, t, 1:]
                s = [float(sel.score(sel.norm(torch.cat([p, cls])))) for p in patches]
                top = sorted(sorted(range(6), key=lambda i: -s[i])[:2])  # spatial order
                want = torch.stack([cls] + [patches[i] for i in top])
                torch.testing.assert_close(out[b, t], want)


def test_selector_scorer_gets_gradient():
    sel = TokenSelector(D, keep=3, keep_cls=True)
    sel(torch.randn(2, 3, 7, D)).sum().backward()
    assert sel.score[0].weight.grad is not None and sel.score[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("modules", ["both", "spatial", "temporal"])
@pytest.mark.parametrize("share", [True, False])
def test_padding_never_influences_a_score(modules, share):
    model = make(modules=modules, share_blocks=share)
    text, text_mask, video, frame_mask = inputs()
    ref = scores(model, text, text_mask, video, frame_mask)
    garbage_t = text.clone()
    garbage_t[~text_mask] = 1e4 * torch.randn(int((~text_mask).sum()), D)
    garbage_v = video.clone()
    garbage_v[~frame_mask] = torch.nan  # padded frames: even NaN must not leak
    torch.testing.assert_close(scores(model, garbage_t, text_mask, garbage_v, frame_mask), ref)
    # a padded batch scores like the unpadded clip on its own
    alone = scores(model, text[1:2, :3], text_mask[1:2, :3], video[1:2, :2], frame_mask[1:2, :2])
    torch.testing.assert_close(alone, ref[1:2], rtol=1e-5, atol=1e-5)


def test_share_switch_shares_blocks():
    shared, unshared = make(share_blocks=True), make(share_blocks=False)
    assert shared.temporal is shared.spatial and unshared.temporal is not unshared.spatial
    n_shared = sum(p.numel() for p in shared.parameters())
    n_unshared = sum(p.numel() for p in unshared.parameters())
    per_block = sum(p.numel() for p in unshared.temporal.parameters())
    assert n_unshared - n_shared == per_block > 0


def test_frames_are_scored_independently_in_the_spatial_module():
    """X_spatial(t) of one frame depends on that frame's tokens only (all frames are one batch)."""
    model = make(modules="spatial")
    text, text_mask, video, frame_mask = inputs()
    with torch.no_grad():
        v = video_emb_from_tokens(model, video, frame_mask)
        x = model._spatial(text, text_mask, v.tokens, frame_mask)
        moved = v.tokens.clone()
        moved[0, 1] = torch.randn_like(moved[0, 1])
        y = model._spatial(text, text_mask, moved, frame_mask)
    torch.testing.assert_close(x[0, [0, 2, 3]], y[0, [0, 2, 3]])
    assert not torch.allclose(x[0, 1], y[0, 1])
    assert torch.all(x[1, 2:] == 0) and torch.all(x[2, 1:] == 0)


def test_frame_order_matters_only_with_a_temporal_module():
    text, text_mask, video, frame_mask = inputs()
    swapped = video[:, [1, 0, 2, 3]]
    both, spatial = make(modules="both"), make(modules="spatial")
    assert not torch.allclose(scores(both, text, text_mask, video, frame_mask)[0],
                              scores(both, text, text_mask, swapped, frame_mask)[0])
    torch.testing.assert_close(scores(spatial, text, text_mask, video, frame_mask)[0],
                               scores(spatial, text, text_mask, swapped, frame_mask)[0])


def test_similarity_is_score_pairs_over_every_pair():
    model = make()
    text, text_mask, video, frame_mask = inputs()
    with torch.no_grad():
        t = text_emb_from_tokens(model, text, text_mask)
        v = video_emb_from_tokens(model, video, frame_mask)
        sim = model.similarity(t, v)
        for i in range(3):
            for j in range(3):
                one = model.score_pairs(t.select([i]), v.select([j]))[0]
                torch.testing.assert_close(sim[i, j], one, rtol=1e-5, atol=1e-5)
