"""The CLIP-layout modules: parameter names, block numerics vs torch's MultiheadAttention, masks, hooks."""

from __future__ import annotations

import torch
from torch import nn

from tvr.encoders.clip_model import ClipModel, ResidualAttentionBlock, TextConfig, VisionConfig

V = VisionConfig(image_size=32, patch_size=8, width=64, layers=1, heads=4, output_dim=16)
T = TextConfig(context_length=12, vocab_size=50, width=32, layers=1, heads=4, output_dim=16)


def _model(seed: int = 0) -> ClipModel:
    torch.manual_seed(seed)
    return ClipModel(V, T).eval()


def _block_keys(prefix: str) -> list[str]:
    names = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
             "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    return [f"{prefix}.resblocks.0.{n}" for n in names]


def test_state_dict_uses_the_open_clip_layout():
    expected = {
        "logit_scale", "visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
        "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj",
        *_block_keys("visual.transformer"), "token_embedding.weight", "positional_embedding",
        *_block_keys("transformer"), "ln_final.weight", "ln_final.bias", "text_projection",
    }
    sd = _model().state_dict()
    assert set(sd) == expected
    assert sd["visual.positional_embedding"].shape == (17, 64)
    assert sd["visual.proj"].shape == (64, 16) and sd["text_projection"].shape == (32, 16)
    other = _model(seed=1)
    other.load_state_dict(sd)  # strict: the flat layout loads back
    torch.testing.assert_close(other.state_dict()["transformer.resblocks.0.attn.in_proj_weight"], sd["transformer.resblocks.0.attn.in_proj_weight"])


def test_block_matches_torch_multihead_attention_reference():
    torch.manual_seed(3)
    block = ResidualAttentionBlock(32, 4, 4.0, quick_gelu=True)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.2)
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    mha.load_state_dict({k[len("attn."):]: v for k, v in block.state_dict().items() if k.startswith("attn.")})
    x = torch.randn(3, 7, 32)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    for ours_mask, their_mask in ((None, None), (causal, ~causal)):  # MHA: True = blocked
        h = block.ln_1(x)
        y = x + mha(h, h, h, need_weights=False, attn_mask=their_mask)[0]
        z = block.mlp.c_fc(block.ln_2(y))
        ref = y + block.mlp.c_proj(z * torch.sigmoid(1.702 * z))
        torch.testing.assert_close(block(x, ours_mask), ref, atol=1e-5, rtol=1e-5)


def test_vision_outputs_project_patches_like_cls():
    model = _model()
    images = torch.randn(2, 3, 32, 32)
    cls, patches = model.visual(images)
    assert cls.shape == (2, 16) and patches.shape == (2, 16, 16)
    assert model.visual.patch_grid == (4, 4) and model.visual.num_patches == 16
    tokens = model.visual.forward_tokens(images)
    projected = model.visual.ln_post(tokens) @ model.visual.proj
    torch.testing.assert_close(cls, projected[:, 0])
    torch.testing.assert_close(patches, projected[:, 1:])


def test_attention_input_hook_changes_only_the_chosen_block():
    model = _model()
    images = torch.randn(2, 3, 32, 32)
    base = model.visual(images)[0]
    seen = []

    def identity(x):
        seen.append(x.shape)
        return x

    model.visual.blocks[0].attn_input_hook = identity
    torch.testing.assert_close(model.visual(images)[0], base)
    assert seen == [(2, 17, 64)]
    model.visual.blocks[0].attn_input_hook = lambda x: x.flip(0)  # swap frames in the attention input only
    changed = model.visual(images)[0]
    assert not torch.allclose(changed, base)
    model.visual.blocks[0].attn_input_hook = None
    torch.testing.assert_close(model.visual(images)[0], base)


def test_text_eot_by_highest_id_equals_explicit_mask_and_ignores_padding():
    model = _model()
    ids = torch.tensor([[47, 5, 9, 49, 0, 0, 0], [47, 3, 49, 0, 0, 0, 0]])
    states, eot, mask = model.text(ids)
    assert states.shape == (2, 7, 16) and eot.shape == (2, 16)
    assert mask.tolist() == [[True] * 4 + [False] * 3, [True] * 3 + [False] * 4]
    torch.testing.assert_close(eot, states[[0, 1], [3, 2]])
    _, eot_masked, _ = model.text(ids, mask)
    torch.testing.assert_close(eot_masked, eot)
    garbage = ids.clone()
    garbage[0, 4:] = torch.tensor([11, 12, 13])
    garbage[1, 3:] = torch.tensor([7, 8, 9, 10])
    _, eot_garbage, _ = model.text(garbage, mask)  # causal: tokens after EOT cannot reach it
    torch.testing.assert_close(eot_garbage, eot)
    torch.testing.assert_close(model.encode_text(ids), eot)
