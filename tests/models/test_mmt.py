"""MMT: temporal indices, AGG init, masking of missing experts, mixture weights, loss, exact index vectors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tvr.data.batch import TextBatch
from tvr.models.experts import ExpertInput, compact, masked_max, shuffle_in_time, temporal_index
from tvr.models.mmt import Mmt, MmtTextEmb, MmtVideoEmb, max_margin_ranking, mixture_weights
from tvr.models.registry import create

TINY = {
    "d_model": 16, "layers": 1, "heads": 2, "ffn": 32, "num_frames": 4, "image_size": 32, "max_features": 6,
    "experts": ["appearance", "motion", "audio"], "appearance": "frames", "expert_dims": [8, 5, 7],
    "text_trainable_layers": 1,
}


@pytest.fixture(scope="module")
def model() -> Mmt:
    torch.manual_seed(0)
    return create("mmt", **TINY).eval()


def _experts(seed: int, b: int = 3, audio_present: tuple[bool, ...] = (True, False, True)) -> list[ExpertInput]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for d, k in ((8, 4), (5, 3), (7, 3)):
        feats = torch.randn(b, k, d, generator=g)
        mask = torch.ones(b, k, dtype=torch.bool)
        mask[0, -1] = False  # some padding
        times = torch.arange(k, dtype=torch.float32).expand(b, k) + 0.5
        out.append(ExpertInput(feats, mask, times.clone()))
    out[2].mask[~torch.tensor(audio_present)] = False
    return out


def test_temporal_index_is_floor_plus_two():
    t = torch.tensor([7.4, 0.0, 0.99, 1.0, float("nan"), -1.0, 1000.0])
    assert temporal_index(t, max_seconds=64).tolist() == [9, 2, 2, 3, 1, 1, 65]


def test_agg_token_is_max_pool_of_projected_features(model):
    experts = _experts(1)
    seq, valid, present = model.input_sequence(experts)
    agg0 = model.temporal_embedding.weight[0]
    for i, (name, x) in enumerate(zip(model.config.experts, experts, strict=True)):
        proj = F.normalize(model.expert_proj[name](x.feats), dim=-1)
        for b in range(x.feats.shape[0]):
            rows = [proj[b, k] for k in range(x.feats.shape[1]) if x.mask[b, k]]
            if not rows:
                assert not valid[b, i] and torch.all(seq[b, i] == 0)  # a missing expert's AGG is zero
                continue
            expected = torch.stack(rows).max(dim=0).values + model.expert_embedding.weight[i] + agg0
            torch.testing.assert_close(seq[b, i], expected)
    assert present.tolist() == [[True, True, True], [True, True, False], [True, True, True]]


def test_masked_max_ignores_padding_and_empty_rows_give_zero():
    x = torch.tensor([[[1.0, -5.0], [9.0, 9.0]], [[2.0, 3.0], [4.0, -1.0]]])
    mask = torch.tensor([[True, False], [False, False]])
    assert masked_max(x, mask).tolist() == [[1.0, -5.0], [0.0, 0.0]]


@torch.no_grad()
def test_missing_expert_and_padding_garbage_change_nothing(model):
    clean = _experts(2)
    dirty = _experts(2)
    dirty[2].feats[1] = 1e6 * torch.randn(3, 7)  # video 1 has no audio: its features are garbage
    dirty[2].times[1] = 123.0
    dirty[0].feats[0, -1] = -1e6  # a padded appearance position
    dirty[0].times[0, -1] = float("nan")
    a, b = model.encode_experts(clean), model.encode_experts(dirty)
    torch.testing.assert_close(a.experts, b.experts)
    torch.testing.assert_close(a.frames, b.frames)
    assert torch.all(b.experts[1, 2] == 0) and not b.present[1, 2]
    text = model.encode_text(TextBatch(["a red circle moves left with beeping", "a blue square"]))
    torch.testing.assert_close(model.similarity(text, a), model.similarity(text, b))


def test_mixture_weights_sum_to_one_over_present_experts():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, True], [False, False, False]])
    w = mixture_weights(logits, present)  # [4, 4, 3]
    for t in range(4):
        for v in range(4):
            p = present[v]
            if not p.any():
                assert torch.all(w[t, v] == 0)
                continue
            torch.testing.assert_close(w[t, v].sum(), torch.tensor(1.0))
            assert torch.all(w[t, v][~p] == 0)
            e = torch.exp(logits[t].double())[p]
            torch.testing.assert_close(w[t, v][p].double(), e / e.sum())


def test_max_margin_loss_equals_brute_force_loop():
    torch.manual_seed(1)
    s = torch.rand(5, 5, dtype=torch.float64) * 2 - 1
    m = 0.05
    total, count = 0.0, 0
    for i in range(5):
        for j in range(5):
            if i != j:
                total += max(0.0, m + s[i, j].item() - s[i, i].item())  # caption i vs video j
                total += max(0.0, m + s[j, i].item() - s[i, i].item())  # video i vs caption j
                count += 2
    assert count == 2 * 5 * 4
    assert max_margin_ranking(s, m).item() == pytest.approx(total / count, abs=1e-12)


def test_model_loss_uses_similarity(model):
    experts = _experts(3)
    t = model.encode_text(TextBatch(["one", "two", "three"]))
    v = model.encode_experts(experts)
    torch.testing.assert_close(model.loss(t, v), max_margin_ranking(model.similarity(t, v), 0.05))


def test_similarity_equals_brute_force_and_index_vectors(model):
    torch.manual_seed(4)
    n_t, n_v, e, d = 5, 8, 3, 16
    t = MmtTextEmb(torch.zeros(n_t, 1), experts=F.normalize(torch.randn(n_t, e, d), dim=-1), weight_logits=torch.randn(n_t, e))
    present = torch.tensor([[bool(code >> i & 1) for i in range(e)] for code in range(n_v)])  # all 8 patterns
    phi = F.normalize(torch.randn(n_v, e, d), dim=-1) * present.unsqueeze(-1)
    v = MmtVideoEmb(phi.flatten(1), experts=phi, present=present)
    s = model.similarity(t, v)
    for i in range(n_t):
        for j in range(n_v):
            p = present[j]
            if not p.any():
                assert s[i, j] == 0
                continue
            w = torch.softmax(t.weight_logits[i][p].double(), dim=0)
            ref = sum(w[k] * torch.dot(t.experts[i][p][k].double(), phi[j][p][k].double()) for k in range(int(p.sum())))
            assert s[i, j].item() == pytest.approx(float(ref), abs=1e-6)
    q, g = model.query_vectors(t), model.gallery_vectors(v)
    assert q.shape[1] == g.shape[1] == d * e * 2 ** (e - 1)
    torch.testing.assert_close(q @ g.t(), s)


def test_compact_moves_valid_first_and_subsamples_uniformly():
    feats = torch.arange(10, dtype=torch.float32).view(1, 10, 1).repeat(2, 1, 1)
    mask = torch.tensor([[True] * 10, [False, True, False, True] + [False] * 6])
    x = compact(ExpertInput(feats, mask, feats[..., 0].clone()), max_features=4)
    assert x.feats.shape == (2, 4, 1)
    assert x.feats[0, :, 0].tolist() == [0.0, 3.0, 6.0, 9.0]  # round(k·9/3)
    assert x.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert x.feats[1, :2, 0].tolist() == [1.0, 3.0] and x.times[1, :2].tolist() == [1.0, 3.0]
    assert math.isnan(x.times[1, 2].item())


def test_shuffle_permutes_valid_features_and_keeps_times():
    feats = torch.arange(12, dtype=torch.float32).view(2, 6, 1)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    times = torch.arange(6, dtype=torch.float32).repeat(2, 1)
    y = shuffle_in_time(ExpertInput(feats, mask, times), torch.Generator().manual_seed(0))
    assert sorted(y.feats[0, :, 0].tolist()) == list(range(6)) and y.feats[0, :, 0].tolist() != list(range(6))
    assert sorted(y.feats[1, :3, 0].tolist()) == [6.0, 7.0, 8.0] and y.feats[1, 3:, 0].tolist() == [9.0, 10.0, 11.0]
    assert torch.equal(y.times, times) and torch.equal(y.mask, mask)


def test_text_freezing_and_lr_scale(model):
    bert = model.text_encoder.bert
    assert not any(p.requires_grad for p in bert.embeddings.parameters())
    assert not any(p.requires_grad for p in bert.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in bert.encoder.layer[-1].parameters())
    assert model.param_lr_scale("text_encoder.bert.encoder.layer.5.output.dense.weight") == 0.05
    assert model.param_lr_scale("expert_proj.audio.weight") is None


def test_bad_config_is_refused():
    from tvr.errors import TvrError
    from tvr.models.registry import make_config

    with pytest.raises(TvrError, match="distinct"):
        make_config("mmt", {"experts": ["audio", "audio"]})


@torch.no_grad()
def test_cached_frozen_prefix_equals_full_minilm_forward(model):
    texts = ["a red circle moves left", "first a small blue box, then a green cross rises with a hum", "x"]
    ids, mask = model._tokenizer(texts, model.config.context_length)
    width = int(mask.sum(dim=1).max())
    _, full = model.text_encoder.eval()(ids[:, :width], mask[:, :width])
    torch.testing.assert_close(model.text_pooled(texts, torch.device("cpu")), full)
    torch.testing.assert_close(model.text_pooled(texts[::-1], torch.device("cpu")), full.flip(0))  # from the cache


def test_text_head_starts_as_the_identity_and_learns_at_full_lr(model):
    """`text_head_layers` adds self-attention layers over MiniLM's token states that change nothing
    before training (the pooled vector is MiniLM's), take the trainer's full lr, and do learn: one
    step on a loss that asks two bag-of-words-equal captions to differ moves them apart."""
    torch.manual_seed(0)
    headed = create("mmt", **{**TINY, "text_head_layers": 2}).eval()
    assert len(headed.text_head) == 2
    missing = headed.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("text_head.") for k in missing)
    texts = ["a red cross beside a blue ball", "a blue cross beside a red ball", "x"]
    with torch.no_grad():
        torch.testing.assert_close(headed.text_pooled(texts, torch.device("cpu")), model.text_pooled(texts, torch.device("cpu")))
    assert headed.param_lr_scale("text_head.0.attn.in_proj_weight") is None

    optimiser = torch.optim.SGD([p for n, p in headed.named_parameters() if n.startswith("text_head.")], lr=0.5)
    def apart() -> torch.Tensor:
        a, b = headed.text_pooled(texts[:2], torch.device("cpu"))
        return F.cosine_similarity(a, b, dim=0)
    before = apart()
    before.backward()
    optimiser.step()
    with torch.no_grad():
        assert apart() < before - 1e-4


def test_bad_text_head_is_refused():
    from tvr.errors import TvrError
    from tvr.models.registry import make_config

    with pytest.raises(TvrError, match="text_head_layers"):
        make_config("mmt", {"text_head_layers": -1})


def test_stream_norm_standardises_valid_features_only():
    """Training: each stream dimension is standardised with the valid rows' mean and biased variance
    (padding, even garbage, neither counts nor changes); eval: the running statistics are used."""
    from tvr.models.layers import MaskedStandardize

    torch.manual_seed(3)
    norm = MaskedStandardize(5, momentum=1.0)  # momentum 1: the running stats become the last batch's
    x = 3.0 + 10.0 * torch.randn(4, 3, 5)
    mask = torch.tensor([[True, True, False], [True, False, False], [True, True, True], [False, False, False]])
    x[~mask] = 1e6  # padding garbage
    out = norm.train()(x, mask)
    rows = x[mask]
    mean, var = rows.mean(0), rows.var(0, unbiased=False)
    torch.testing.assert_close(out[mask], (rows - mean) / torch.sqrt(var + 1e-5))
    assert torch.all(out[~mask] == 0)
    torch.testing.assert_close(norm.norm.running_mean, mean)
    torch.testing.assert_close(norm.norm.running_var, rows.var(0, unbiased=True))  # BatchNorm keeps the unbiased one
    y = torch.randn(2, 3, 5)
    ymask = torch.tensor([[True, False, True], [False, True, False]])
    got = norm.eval()(y, ymask)
    torch.testing.assert_close(got[ymask], (y[ymask] - mean) / torch.sqrt(rows.var(0, unbiased=True) + 1e-5))
    before = norm.norm.running_mean.clone()
    single = norm.train()(y[:1, :2], torch.tensor([[True, False]]))  # one valid row: the running statistics
    torch.testing.assert_close(single[0, 0], (y[0, 0] - mean) / torch.sqrt(rows.var(0, unbiased=True) + 1e-5))
    torch.testing.assert_close(norm.norm.running_mean, before)


def test_stream_norm_applies_to_streams_not_the_backbone():
    torch.manual_seed(0)
    plain = create("mmt", **TINY).eval()
    torch.manual_seed(0)
    normed = create("mmt", **TINY, stream_norm=True)
    assert sorted(normed.stream_norms) == ["appearance", "audio", "motion"]  # "frames" is a stream here
    assert len(plain.stream_norms) == 0
    experts = _experts(4)
    normed.train().input_sequence(experts)  # one training batch sets the running statistics
    normed.eval()
    seq, _, _ = normed.input_sequence(experts)
    motion = experts[1]
    stats = normed.stream_norms["motion"].norm
    expected = F.normalize(normed.expert_proj["motion"]((motion.feats - stats.running_mean)
                                                        / torch.sqrt(stats.running_var + 1e-5)), dim=-1)
    when = normed.temporal_embedding(temporal_index(motion.times, normed.config.max_seconds))
    torch.testing.assert_close(seq[0, 3 + 4], expected[0, 0] + normed.expert_embedding.weight[1] + when[0, 0])
    backbone = create("mmt", **{k: v for k, v in TINY.items() if k not in ("appearance", "expert_dims")},
                      expert_dims=[0, 5, 7], stream_norm=True)
    assert sorted(backbone.stream_norms) == ["audio", "motion"]
