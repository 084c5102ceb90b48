"""Every post-processor against an independent float64 loop on small random matrices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tvr.errors import TvrError, UnknownName
from tvr.postproc import apply_postproc, is_transductive, postproc_names

BETA = 20.0


def data(seed: int, n_q: int = 6, n_g: int = 9, n_b: int = 11, levels: int | None = None):
    rng = np.random.default_rng(seed)
    if levels:  # coarse values: plenty of ties
        s = rng.integers(0, levels, size=(n_q, n_g)) / levels
        b = rng.integers(0, levels, size=(n_b, n_g)) / levels
    else:
        s, b = rng.uniform(-1, 1, size=(n_q, n_g)), rng.uniform(-1, 1, size=(n_b, n_g))
    return s, b


def ref_is(s, b, beta=BETA):
    out = np.empty_like(s)
    for q, g in itertools.product(range(s.shape[0]), range(s.shape[1])):
        out[q, g] = beta * s[q, g] - math.log(sum(math.exp(beta * b[i, g]) for i in range(b.shape[0])))
    return out


def ref_topk(row, k):
    return sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]


def ref_dis(s, b, k=1, beta=BETA):
    active = {g for i in range(b.shape[0]) for g in ref_topk(b[i], k)}
    is_ = ref_is(s, b, beta)
    out = np.empty_like(s)
    for q in range(s.shape[0]):
        top1 = ref_topk(s[q], 1)[0]
        out[q] = is_[q] if top1 in active else beta * s[q]
    return out


def ref_csls(s, b, k=10):
    out = np.empty_like(s)
    for q, g in itertools.product(range(s.shape[0]), range(s.shape[1])):
        r_b = sum(sorted(b[:, g], reverse=True)[: min(k, b.shape[0])]) / min(k, b.shape[0])
        r_q = sum(sorted(s[q], reverse=True)[: min(k, s.shape[1])]) / min(k, s.shape[1])
        out[q, g] = 2 * s[q, g] - r_b - r_q
    return out


def ref_gc_rank(s, b):
    rank = np.empty_like(s)
    for q, g in itertools.product(range(s.shape[0]), range(s.shape[1])):
        higher = sum(1 for i in range(b.shape[0]) if b[i, g] > s[q, g])
        equal = sum(1 for i in range(b.shape[0]) if b[i, g] == s[q, g])
        rank[q, g] = 1 + higher + equal / 2.0
    return rank


def ref_cent(s, b):
    return np.array([[s[q, g] - sum(b[:, g]) / b.shape[0] for g in range(s.shape[1])] for q in range(s.shape[0])])


def ref_dsl(s, tau=1.0):
    out = np.empty_like(s)
    for g in range(s.shape[1]):
        z = sum(math.exp(s[i, g] / tau) for i in range(s.shape[0]))
        for q in range(s.shape[0]):
            out[q, g] = s[q, g] * math.exp(s[q, g] / tau) / z
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 4])
def test_querybank_methods_match_loops(seed: int, levels) -> None:
    s, b = data(seed, levels=levels)
    np.testing.assert_allclose(apply_postproc("is", s, b), ref_is(s, b), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(apply_postproc("cent", s, b), ref_cent(s, b), atol=1e-12)
    for k in (1, 3):
        np.testing.assert_allclose(apply_postproc("dis", s, b, k=k), ref_dis(s, b, k=k), atol=1e-9)
    for k in (2, 10, 50):
        np.testing.assert_allclose(apply_postproc("csls", s, b, k=k), ref_csls(s, b, k=k), atol=1e-12)
    np.testing.assert_allclose(apply_postproc("csls", s, b), ref_csls(s, b), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 3])
def test_gc_is_negative_bank_rank_with_ties_broken_by_score(seed: int, levels) -> None:
    s, b = data(seed, n_q=5, n_g=12, n_b=9, levels=levels)
    got = apply_postproc("gc", s, b)
    rank = ref_gc_rank(s, b)
    for q in range(s.shape[0]):
        want_order = sorted(range(s.shape[1]), key=lambda g: (rank[q, g], -s[q, g], g))
        got_order = sorted(range(s.shape[1]), key=lambda g: (-got[q, g], g))
        assert got_order == want_order
        # the rank part is exact: the tie-break term lies in [0, 0.25]
        np.testing.assert_array_less(-rank[q] - 1e-12, got[q])
        np.testing.assert_array_less(got[q], -rank[q] + 0.25 + 1e-12)


def test_dis_mixes_normalised_and_raw_rows() -> None:
    s = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])
    b = np.array([[0.8, 0.2, 0.1], [0.7, 0.0, 0.3]])  # bank top-1 is always item 0
    out = apply_postproc("dis", s, b)
    np.testing.assert_allclose(out[0], ref_is(s, b)[0])  # top-1 = 0 is active → IS
    np.testing.assert_allclose(out[1], BETA * s[1])  # top-1 = 2 is not → raw order


@pytest.mark.parametrize("shape", [(5, 5), (4, 9), (9, 4)])
def test_dual_softmax_matches_loop(shape) -> None:
    s = np.random.default_rng(7).normal(scale=3.0, size=shape)
    np.testing.assert_allclose(apply_postproc("dsl", s), ref_dsl(s), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(apply_postproc("dsl", s, temperature=0.5), ref_dsl(s, 0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "seed"), [((3, 5), 0), ((5, 3), 1), ((4, 4), 2), ((2, 6), 3)])
def test_hungarian_matches_brute_force_assignment(shape, seed: int) -> None:
    s = np.random.default_rng(seed).normal(size=shape)
    n_q, n_g = shape
    best, best_pairs = -np.inf, None
    if n_q <= n_g:
        for perm in itertools.permutations(range(n_g), n_q):
            total = sum(s[q, perm[q]] for q in range(n_q))
            if total > best:
                best, best_pairs = total, {q: perm[q] for q in range(n_q)}
    else:
        for perm in itertools.permutations(range(n_q), n_g):
            total = sum(s[perm[g], g] for g in range(n_g))
            if total > best:
                best, best_pairs = total, {perm[g]: g for g in range(n_g)}
    out = apply_postproc("tvh", s)
    for q in range(n_q):
        order = list(np.argsort(-out[q], kind="stable"))
        raw_order = list(np.argsort(-s[q], kind="stable"))
        if q in best_pairs:
            assert order[0] == best_pairs[q]
            assert order[1:] == [g for g in raw_order if g != best_pairs[q]]
        else:
            assert order == raw_order
    assert is_transductive("tvh") and is_transductive("dsl")


def test_logit_scale_with_beta_20_does_not_overflow() -> None:
    s, b = data(0, n_q=8, n_g=30, n_b=50)
    s100, b100 = 100 * s, 100 * b  # β·s reaches 2000: exp would overflow float64
    for name in ("is", "dis", "csls", "gc", "cent", "dsl", "tvh"):
        with np.errstate(over="raise"):
            out = apply_postproc(name, s100, b100)
        assert np.isfinite(out).all(), name
    # IS on the logit scale equals the shifted-logsumexp reference
    z = BETA * b100
    log_z = np.array([z[:, g].max() + math.log(np.sum(np.exp(z[:, g] - z[:, g].max()))) for g in range(30)])
    np.testing.assert_allclose(apply_postproc("is", s100, b100), BETA * s100 - log_z, rtol=1e-12)


def test_inputs_are_never_mutated() -> None:
    s, b = data(3)
    s32, b32 = s.astype(np.float32), b.astype(np.float32)
    keep = (s.copy(), b.copy(), s32.copy(), b32.copy())
    for name in postproc_names():
        apply_postproc(name, s, b)
        apply_postproc(name, s32, b32)
    for a, c in zip((s, b, s32, b32), keep):
        np.testing.assert_array_equal(a, c)


def test_registry_names_and_flags() -> None:
    assert postproc_names() == ["cent", "csls", "dis", "dsl", "gc", "is", "none", "tvh"]
    assert [n for n in postproc_names() if is_transductive(n)] == ["dsl", "tvh"]
    with pytest.raises(UnknownName, match="qbnorm"):
        apply_postproc("qbnorm", np.zeros((2, 2)))
    s, _ = data(0)
    np.testing.assert_array_equal(apply_postproc("none", s), s)


@pytest.mark.parametrize(
    ("bank", "needle"),
    [
        (None, "needs a querybank"),
        (np.zeros((0, 9)), "empty"),
        (np.zeros((4, 8)), "gallery"),
        (np.full((3, 9), np.nan), "non-finite"),
    ],
)
def test_bad_querybank_is_a_user_error(bank, needle: str) -> None:
    s, _ = data(0)
    with pytest.raises(TvrError, match=needle):
        apply_postproc("is", s, bank)


@pytest.mark.parametrize(
    ("kwargs", "needle"), [({"beta": 0.0}, "beta"), ({"k": 0}, "k must"), ({"temperature": -1.0}, "temperature")]
)
def test_bad_parameters_are_user_errors(kwargs, needle: str) -> None:
    s, b = data(0)
    with pytest.raises(TvrError, match=needle):
        apply_postproc("is", s, b, **kwargs)
