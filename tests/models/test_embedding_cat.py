"""Embeddings of batches padded to different lengths concatenate; padding reads as masked."""

import torch

from tvr.models.base import TextEmb, VideoEmb


def test_cat_pads_ragged_token_axes_with_zeros_and_false():
    a = TextEmb(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    b = TextEmb(torch.randn(1, 4), torch.randn(1, 5, 4), torch.ones(1, 5, dtype=torch.bool))
    c = TextEmb.cat([a, b])
    assert c.tokens.shape == (3, 5, 4) and c.token_mask.shape == (3, 5)
    torch.testing.assert_close(c.tokens[:2, :3], a.tokens)
    assert (c.tokens[:2, 3:] == 0).all() and not c.token_mask[:2, 3:].any()
    torch.testing.assert_close(c.tokens[2], b.tokens[0])
    torch.testing.assert_close(c.pooled, torch.cat([a.pooled, b.pooled]))


def test_cat_of_equal_shapes_is_plain_concatenation():
    v = [VideoEmb(torch.randn(n, 8), torch.randn(n, 4, 8), torch.ones(n, 4, dtype=torch.bool)) for n in (2, 3)]
    c = VideoEmb.cat(v)
    torch.testing.assert_close(c.frames, torch.cat([x.frames for x in v]))
    assert c.timestamps is None
