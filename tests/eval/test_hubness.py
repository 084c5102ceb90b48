"""Hubness diagnostics against brute-force loops and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import skew

from tvr.eval.hubness import hubness, k_occurrence, skewness


def brute_k_occurrence(scores: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros(scores.shape[1], dtype=np.int64)
    for row in scores:
        order = sorted(range(row.size), key=lambda j: (-row[j], j))  # ties: lower column first
        for j in order[:k]:
            counts[j] += 1
    return counts


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("shape", "k"), [((20, 15), 3), ((9, 40), 10), ((25, 6), 10)])
def test_k_occurrence_matches_brute_force_with_ties(seed: int, shape, k: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=shape).astype(np.float64)
    np.testing.assert_array_equal(k_occurrence(scores, k), brute_k_occurrence(scores, k))


def test_skewness_matches_population_formula() -> None:
    x = np.random.default_rng(1).exponential(size=500)
    assert skewness(x) == pytest.approx(skew(x, bias=True))
    assert skewness(np.full(10, 3.0)) == 0.0


def test_single_hub_hand_computed() -> None:
    scores = np.array([[0.9, 0.1, 0.2, 0.0], [0.8, 0.3, 0.1, 0.0], [0.7, 0.2, 0.6, 0.0]])
    h = hubness(scores, k=1)
    counts = np.array([3, 0, 0, 0], dtype=float)
    assert h["max_occurrence"] == 3
    assert h["never_retrieved"] == pytest.approx(0.75)
    assert h["skewness"] == pytest.approx(skew(counts, bias=True))
