"""Tokenizers and the MiniLM sentence encoder (pretrained, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvr.encoders.minilm import load_minilm, minilm_path
from tvr.encoders.registry import create_text_encoder
from tvr.encoders.tokenizer import HashingTokenizer, WordTokenizer, load_tokenizer
from tvr.errors import TvrError


def test_word_tokenizer_build_save_load(tmp_path):
    tok = WordTokenizer.build(["A red circle, then a blue square.", "a red square"])
    assert tok.tokens[3:6] == ["a", "red", "square"]  # by frequency, ties alphabetically
    assert tok.eot_id == tok.vocab_size - 1 and tok.tokens[-1] == "<eot>"
    ids, mask = tok(["a red dog", "red"], 6)
    assert ids.tolist() == [[2, 3, 4, 1, tok.eot_id, 0], [2, 4, tok.eot_id, 0, 0, 0]]
    assert mask.sum(1).tolist() == [5, 3]
    assert int(ids[0].argmax()) == 4  # EOT is the highest id
    short, short_mask = tok(["a red square then a blue circle"], 4)
    assert short.tolist() == [[2, 3, 4, tok.eot_id]] and short_mask.all()
    tok.save(tmp_path / "vocab.json")
    again = load_tokenizer(tmp_path / "vocab.json")
    assert isinstance(again, WordTokenizer) and again.tokens == tok.tokens and again.version == tok.version
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(TvrError, match="bad.json"):
        WordTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(TvrError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_hashing_tokenizer_is_stable():
    tok = HashingTokenizer(1024)
    ids, mask = tok(["Red circle", "red  CIRCLE"], 8)
    assert torch.equal(ids[0], ids[1]) and ids[0, 3] == 1023 and mask[0].sum() == 4
    assert ids[0, 1].item() == 3 + __import__("zlib").crc32(b"red") % 1020


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm", device="cpu")


def test_minilm_offline_matches_sentence_transformers_and_ranks_paraphrases(minilm):
    texts = ["a man is playing a guitar", "someone plays the guitar", "the stock market fell sharply today"]
    feats = minilm.encode_text(texts)
    assert feats.pooled.shape == (3, 384) and feats.tokens.shape[:2] == feats.mask.shape
    np.testing.assert_allclose(np.linalg.norm(feats.pooled, axis=1), 1.0, atol=1e-5)
    sim = feats.pooled @ feats.pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True).encode(texts)
    np.testing.assert_allclose(feats.pooled, reference, atol=1e-5)
    assert minilm.version.startswith("minilm-")


def test_load_minilm_trainable_gives_gradients():
    module, tok = load_minilm(trainable=True)
    assert module.training and all(p.requires_grad for p in module.parameters())
    ids, mask = tok(["a dog runs"], 16)
    states, pooled = module(ids, mask)
    pooled.sum().backward()
    assert module.bert.embeddings.word_embeddings.weight.grad is not None
    assert states.shape == (1, 16, 384)
