"""`backbone.text_context = "minilm"`: a trained reading of frozen MiniLM states added to the text tower.

Against hand computations: a fresh context leaves the tower's embedding unchanged; the correction is
the projection of the masked mean of one transformer pass over MiniLM's states of that caption alone,
whatever else is in the batch and whether or not it was cached; MiniLM's weights are never saved or
trained; the new parts learn at the full learning rate.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tvr.models import TextBatch
from tvr.models.backbone import BackboneConfig
from tvr.models.registry import build, load_model, lookup, make_config, save_model
from tvr.train.presets import TrainConfig
from tvr.train.trainer import param_groups

TINY = {"num_frames": 4, "image_size": 32,
        "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1, "vision_heads": 2,
                     "text_width": 16, "text_layers": 1, "text_heads": 2}}
CAPTIONS = ["a red circle moves left, then a blue square rises", "a blue square rises, then a red circle moves left",
            "red"]


def _model(method: str = "clip4clip-seqtransf", context: str = "minilm", seed: int = 0):
    torch.manual_seed(seed)
    cfg = make_config(method, {**TINY, "backbone": {**TINY["backbone"], "text_context": context}})
    cls, _ = lookup(method)
    return build(method, cls.adapt_config(cfg, CAPTIONS)).eval()


def _randomise(context) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in context.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_a_fresh_context_leaves_the_tower_unchanged():
    plain, with_context = _model(context="none"), _model()
    assert with_context.backbone.text_context is not None and plain.backbone.text_context is None
    with torch.no_grad():
        a, b = plain.encode_text(TextBatch(CAPTIONS)), with_context.encode_text(TextBatch(CAPTIONS))
    torch.testing.assert_close(a.pooled, b.pooled, rtol=0, atol=0)
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)


def _by_hand(model, caption: str) -> torch.Tensor:
    """The tower's EOT embedding + the context's correction, computed for `caption` alone, unpadded."""
    context = model.backbone.text_context
    ids, mask = context._tokenizer([caption], 64)
    n = int(mask.sum())
    states, _ = context._frozen[0](ids[:, :n], mask[:, :n])
    x = states + context.positional_embedding[:n]
    block = context.transformer.resblocks[0]
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False)[0]
    x = x + block.mlp(block.ln_2(x))
    ids, mask = model.backbone._tokenizer([caption], model.backbone.config.context_length)
    w = int(mask.sum())
    tower = model.backbone.text(ids[:, :w], mask[:, :w])[1][0]
    return tower + context.proj(x[0].double().mean(0).float())


def test_the_correction_against_a_hand_computation():
    model = _model()
    _randomise(model.backbone.text_context)
    with torch.no_grad():
        batch = model.backbone.encode_text(CAPTIONS)[0]  # "red" is padded beside the longer captions
        want = torch.stack([_by_hand(model, c) for c in CAPTIONS])
    torch.testing.assert_close(batch, want, rtol=1e-4, atol=1e-5)
    # the reading knows word order: a caption and its reversal get different corrections
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_cache_is_bounded_and_changes_nothing():
    model = _model()
    context = model.backbone.text_context
    _randomise(context)
    with torch.no_grad():
        first = model.backbone.encode_text(CAPTIONS)[0]
        assert set(context._cache) == set(CAPTIONS)
        cached = model.backbone.encode_text(CAPTIONS)[0]
        context._cache_limit = context._cache[CAPTIONS[0]].numel() * 4  # room for one caption
        again = model.backbone.encode_text(CAPTIONS[:1])[0]  # the first caption becomes the most recent
        assert list(context._cache) == CAPTIONS[:1]  # the least recently used left first
        third = model.backbone.encode_text(CAPTIONS)[0]
    assert context._cache_bytes <= context._cache_limit
    torch.testing.assert_close(again[0], first[0], rtol=0, atol=1e-6)  # alone: other matmul shapes
    torch.testing.assert_close(first, cached, rtol=0, atol=0)
    torch.testing.assert_close(first, third, rtol=0, atol=0)


def test_minilm_is_frozen_and_not_saved(tmp_path):
    model = _model()
    _randomise(model.backbone.text_context)
    keys = list(model.state_dict())
    assert any(k.startswith("backbone.text_context.") for k in keys)
    assert not any("bert" in k for k in keys), "MiniLM's weights come from its package, not the model file"
    assert not any(p is q for p in model.parameters() for q in model.backbone.text_context._frozen[0].parameters())
    save_model(model, tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    with torch.no_grad():
        want = model.encode_text(TextBatch(CAPTIONS)).pooled
        got = loaded.eval().encode_text(TextBatch(CAPTIONS)).pooled
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_the_new_parts_learn_at_the_full_lr():
    model = _model()
    cfg = TrainConfig(lr=1e-3, backbone_lr_scale=0.1)
    lr_of = {id(p): g["lr"] for g in param_groups(model, cfg) for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["backbone.text_context.proj.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["backbone.text_context.positional_embedding"])] == pytest.approx(1e-3)
    assert lr_of[id(named["backbone.visual.conv1.weight"])] == pytest.approx(1e-4)
    assert lr_of[id(named["backbone.text.token_embedding.weight"])] == pytest.approx(1e-4)


def test_one_step_moves_the_context_and_not_minilm():
    model = _model().train()
    minilm = model.backbone.text_context._frozen[0]
    before = {n: p.detach().clone() for n, p in minilm.named_parameters()}
    proj = model.backbone.text_context.proj.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    text = model.encode_text(TextBatch(CAPTIONS))
    loss = -F.normalize(text.pooled, dim=-1)[:, 0].sum()
    loss.backward()
    opt.step()
    assert not torch.equal(model.backbone.text_context.proj.weight, proj)
    assert all(torch.equal(p, before[n]) for n, p in minilm.named_parameters())


@pytest.mark.parametrize(("fields", "match"), [
    ({"text_context": "bert"}, "text_context"),
    ({"text_context": "minilm", "text_encoder": "minilm"}, "already reads MiniLM"),
    ({"text_context": "minilm", "text_context_layers": 0}, "text_context_layers"),
])
def test_bad_settings_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        BackboneConfig(**fields)
