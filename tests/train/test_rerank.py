"""Two-stage scoring and hard-negative sampling against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvr.eval.metrics import ranks
from tvr.postproc.two_stage import top_k_candidates, two_stage_scores
from tvr.train.rerank_trainer import sample_hard_negatives


def counting(fn):
    calls = {"calls": 0, "pairs": 0, "seen": []}

    def rescore(q, g):
        calls["calls"] += 1
        calls["pairs"] += len(q)
        calls["seen"].append((q.copy(), g.copy()))
        return fn(q, g)

    return rescore, calls


def test_candidates_are_the_first_stage_top_k_in_order():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(7, 40)).round(1)  # ties on purpose
    cand = top_k_candidates(s, 5)
    for q in range(7):
        want = sorted(range(40), key=lambda g: (-s[q, g], g))[:5]
        assert cand[q].tolist() == want
    assert top_k_candidates(s[:, :3], 5).shape == (7, 3)


def test_zero_reranker_on_a_correct_first_stage_changes_nothing():
    rng = np.random.default_rng(1)
    first = rng.normal(size=(20, 60))
    gt = rng.integers(0, 60, size=20)
    first[np.arange(20), gt] = first.max() + 1.0  # the first stage already ranks the right video first
    before = first.copy()
    final = two_stage_scores(first, 15, lambda q, g: np.zeros(len(q)))
    np.testing.assert_array_equal(first, before)  # input untouched
    np.testing.assert_array_equal(ranks(final, gt.tolist()), ranks(first, gt.tolist()))
    np.testing.assert_array_equal(np.argsort(-final, axis=1, kind="stable"), np.argsort(-first, axis=1, kind="stable"))


def test_non_candidates_never_outrank_candidates_and_keep_their_order():
    rng = np.random.default_rng(2)
    first = rng.normal(size=(12, 50))
    second = rng.normal(scale=100.0, size=(12, 50))  # a re-ranker that wants to overturn everything
    final = two_stage_scores(first, 5, lambda q, g: second[q, g])
    cand = top_k_candidates(first, 5)
    for q in range(12):
        is_c = np.zeros(50, bool)
        is_c[cand[q]] = True
        assert final[q, is_c].min() > final[q, ~is_c].max()
        np.testing.assert_allclose(final[q, cand[q]], first[q, cand[q]] + second[q, cand[q]])  # brute force
        rest = np.flatnonzero(~is_c)
        assert (np.argsort(-final[q, rest], kind="stable") == np.argsort(-first[q, rest], kind="stable")).all()


@pytest.mark.parametrize("n_gallery", [20, 2000])
def test_reranker_cost_is_independent_of_gallery_size(n_gallery):
    rng = np.random.default_rng(3)
    first = rng.normal(size=(9, n_gallery))
    rescore, calls = counting(lambda q, g: np.ones(len(q)))
    two_stage_scores(first, 15, rescore, chunk=64)
    assert calls["pairs"] == 9 * 15 and calls["calls"] == -(-9 * 15 // 64)
    cand = top_k_candidates(first, 15)
    seen = {(int(q), int(g)) for qs, gs in calls["seen"] for q, g in zip(qs, gs)}
    assert seen == {(q, int(g)) for q in range(9) for g in cand[q]}  # never a non-candidate


def test_hard_negatives_follow_the_first_stage_softmax():
    logits = torch.tensor([[5.0, 4.0, 0.0, 1.0], [0.0, 5.0, 3.0, 0.0], [1.0, 1.0, 5.0, 1.0], [2.0, 0.0, 0.0, 5.0]])
    caps = ["a", "b", "c", "a"]  # captions 0 and 3 are identical: never each other's negative
    n = 4000
    counts_v = np.zeros((4, 4))
    counts_t = np.zeros((4, 4))
    for i in range(n):
        neg_t, neg_v = sample_hard_negatives(logits, caps, np.random.default_rng([7, i]))
        counts_t[np.arange(4), neg_t] += 1
        counts_v[np.arange(4), neg_v] += 1
    for i in range(4):
        allowed = np.array([j != i and caps[j] != caps[i] for j in range(4)])
        for counts, row in ((counts_v, logits[i]), (counts_t, logits[:, i])):
            w = np.where(allowed, np.exp(row.numpy()), 0.0)
            np.testing.assert_allclose(counts[i] / n, w / w.sum(), atol=0.03)
            assert counts[i, ~allowed].sum() == 0
