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


def test_first_weight_scales_the_first_stage_before_the_merge():
    rng = np.random.default_rng(4)
    first = rng.normal(size=(10, 30))
    second = rng.normal(size=(10, 30))
    final = two_stage_scores(first, 6, lambda q, g: second[q, g], first_weight=15.5)
    cand = top_k_candidates(first, 6)
    for q in range(10):
        np.testing.assert_allclose(final[q, cand[q]], 15.5 * first[q, cand[q]] + second[q, cand[q]])
        rest = np.setdiff1d(np.arange(30), cand[q])
        assert final[q, cand[q]].min() > final[q, rest].max()
        assert (np.argsort(-final[q, rest], kind="stable") == np.argsort(-first[q, rest], kind="stable")).all()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="first_weight"):
            two_stage_scores(first, 6, lambda q, g: second[q, g], first_weight=bad)


def _nll(a: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
    z = a * x + b
    return float(np.mean(np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)))


def test_fit_logistic_is_the_maximum_likelihood_fit():
    from scipy.optimize import minimize

    from tvr.train.rerank_trainer import fit_logistic

    rng = np.random.default_rng(5)
    x = rng.normal(0.3, 0.1, size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(20 * x - 7)))).astype(float)
    a, b = fit_logistic(x, y, fallback_scale=10.0)
    ref = minimize(lambda p: _nll(p[0], p[1], x, y), np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20000})
    np.testing.assert_allclose([a, b], ref.x, rtol=1e-3, atol=1e-3)
    assert abs(a - 20) < 3 and abs(b + 7) < 1  # and near the parameters that drew the labels


def test_fit_logistic_accepts_an_optimum_scipy_calls_a_bad_approximation():
    """scipy's trust-exact ends with success False ("a bad approximation caused failure to predict
    improvement") at this optimum, where float rounding hides any further gain: still the fit, not
    the fallback. Scores as the first stage gives them, positives above the hard negatives."""
    from scipy.optimize import minimize

    from tvr.train.rerank_trainer import fit_logistic

    rng = np.random.default_rng(3)
    n = 4151
    x = np.concatenate([rng.normal(0.607, 0.129, n), rng.normal(0.356, 0.155, 2 * n)]).astype(np.float32).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(2 * n)])
    a, b = fit_logistic(x, y, fallback_scale=17.4)
    ref = minimize(lambda p: _nll(p[0], p[1], x, y), np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20000})
    np.testing.assert_allclose([a, b], ref.x, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("flip", [False, True], ids=["separable", "inverted"])
def test_fit_logistic_falls_back_to_the_given_scale(flip):
    from tvr.train.rerank_trainer import fit_logistic

    x = np.linspace(-1, 1, 200)
    y = (x > 0.1).astype(float)
    if flip:  # lower scores are the positives: a would be negative
        y = 1 - y
        y[::7] = 1 - y[::7]  # not separable either
    a, b = fit_logistic(x, y, fallback_scale=12.0)
    assert a == 12.0
    grid = np.linspace(-30, 30, 60001)  # b alone, by brute force
    best = grid[np.argmin([_nll(12.0, g, x, y) for g in grid])]
    assert abs(b - best) < 2e-3


def test_fit_logistic_caps_the_scale_of_nearly_separable_data():
    from tvr.train.rerank_trainer import fit_logistic

    x = np.concatenate([np.linspace(0.0, 0.2, 100), np.linspace(0.199, 0.4, 50)])
    y = np.concatenate([np.zeros(100), np.ones(50)])  # the lowest positive sits below the highest negative
    assert fit_logistic(x, y, fallback_scale=12.0, max_scale=1e9)[0] > 500  # uncapped, a runs away
    a, b = fit_logistic(x, y, fallback_scale=12.0)
    assert a == 100.0
    grid = np.linspace(-100, 0, 100001)
    best = grid[np.argmin([_nll(100.0, g, x, y) for g in grid])]
    assert abs(b - best) < 2e-3
