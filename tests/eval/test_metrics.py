"""Metrics against float64 brute-force loops: ties, several captions per video, rectangular shapes."""

from __future__ import annotations

import numpy as np
import pytest

from tvr.errors import TvrError
from tvr.eval.metrics import ranks, recall_summary, retrieval_metrics


def brute_rank(row: np.ndarray, correct: list[int]) -> float:
    best = np.inf
    for c in correct:
        higher = sum(1 for j in range(row.size) if row[j] > row[c])
        equal = sum(1 for j in range(row.size) if row[j] == row[c])
        best = min(best, higher + (equal + 1) / 2.0)
    return best


def brute_summary(r: list[float]) -> dict[str, float]:
    n = len(r)
    out = {f"R@{k}": 100.0 * sum(1 for x in r if x <= k) / n for k in (1, 5, 10, 50)}
    s = sorted(r)
    out["MdR"] = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    out["MnR"] = sum(r) / n
    out["rsum"] = out["R@1"] + out["R@5"] + out["R@10"]
    return out


def brute_metrics(scores: np.ndarray, gt: list[list[int]]) -> dict[str, dict[str, float]]:
    n_q, n_g = scores.shape
    t2v = [brute_rank(scores[q], gt[q]) for q in range(n_q)]
    v2t = []
    for g in range(n_g):
        caps = [q for q in range(n_q) if g in gt[q]]
        if caps:
            v2t.append(brute_rank(scores[:, g], caps))
    return {"t2v": brute_summary(t2v), "v2t": brute_summary(v2t)}


def assert_summary_close(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-9), key


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(12, 12), (30, 9), (7, 40)])
def test_ranks_match_brute_force_with_ties(seed: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    n_q, n_g = shape
    scores = rng.integers(0, 4, size=shape).astype(np.float64)  # few levels: many ties
    gt = [sorted(set(rng.integers(0, n_g, size=rng.integers(1, 4)).tolist())) for _ in range(n_q)]
    got = ranks(scores, gt)
    want = [brute_rank(scores[q], gt[q]) for q in range(n_q)]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_multi_caption_both_directions_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n_videos, per_video = 15, 4  # 60 captions, 4 per video (MSR-VTT full style)
    caption_video = np.repeat(np.arange(n_videos), per_video)
    scores = np.round(rng.normal(size=(n_videos * per_video, n_videos + 5)), 1)  # 5 distractors, ties
    scores[np.arange(caption_video.size), caption_video] += 1.0
    gt = [[int(v)] for v in caption_video]
    got = retrieval_metrics(scores, [int(v) for v in caption_video])
    want = brute_metrics(scores, gt)
    for direction in ("t2v", "v2t"):
        assert_summary_close(got[direction], want[direction])


def test_all_equal_scores_do_not_report_perfect_recall() -> None:
    scores = np.zeros((100, 100))
    r = ranks(scores, list(range(100)))
    np.testing.assert_allclose(r, 50.5)
    m = retrieval_metrics(scores, list(range(100)))
    assert m["t2v"]["R@1"] == 0.0 and m["v2t"]["R@1"] == 0.0
    assert m["t2v"]["R@50"] == 0.0 and m["t2v"]["MdR"] == 50.5


def test_recall_summary_hand_computed() -> None:
    s = recall_summary(np.array([1, 2, 6, 11, 60]))
    assert s == {"R@1": 20.0, "R@5": 40.0, "R@10": 60.0, "R@50": 80.0, "MdR": 6.0, "MnR": 16.0, "rsum": 120.0}


def test_identity_is_perfect_and_input_untouched() -> None:
    scores = np.eye(5) + 0.01 * np.arange(5)
    before = scores.copy()
    m = retrieval_metrics(scores, np.arange(5))
    assert m["t2v"]["R@1"] == 100.0 and m["v2t"]["MnR"] == 1.0
    np.testing.assert_array_equal(scores, before)


def test_minus_inf_sentinel_is_allowed() -> None:
    scores = np.array([[0.5, -np.inf, 0.2], [-np.inf, -np.inf, 1.0]])
    np.testing.assert_allclose(ranks(scores, [2, 1]), [2.0, 2.5])


@pytest.mark.parametrize(
    ("gt", "needle"),
    [
        ([0, 1], "2 entries"),
        ([0, 1, 7], "out of range"),
        ([0, 1, -1], "out of range"),
        ([0, 1, []], "empty"),
        ([0, 1, True], "entry 2"),
        ([0, 1, "x"], "entry 2"),
        ([0, 1, 1.5], "entry 2"),
    ],
)
def test_bad_ground_truth_is_a_user_error(gt, needle: str) -> None:
    with pytest.raises(TvrError, match=needle):
        ranks(np.zeros((3, 3)), gt)


def test_nan_is_a_user_error() -> None:
    with pytest.raises(TvrError, match="NaN"):
        ranks(np.array([[np.nan, 1.0]]), [0])
