"""Ensemble selection: forward and bagged selection against brute force on hand-built logits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tvr.eval.metrics import ranks
from tvr.eval.selection import bagged, forward, r_at_1


def logits_of(seed: int, n_q: int = 40, n_g: int = 20) -> dict[str, np.ndarray]:
    """Five candidates: noisy views of one truth, each blind to a different part of the gallery; and noise."""
    rng = np.random.default_rng(seed)
    gt = np.arange(n_q) % n_g
    truth = np.zeros((n_q, n_g))
    truth[np.arange(n_q), gt] = 1.0
    out = {}
    for i, name in enumerate("abcde"):
        blind = (np.arange(n_g) % 5) == i  # candidate i cannot see these videos
        out[name] = truth * ~blind[gt][:, None] + rng.normal(0, 0.45 + 0.05 * i, (n_q, n_g))
    out["noise"] = rng.normal(0, 3.0, (n_q, n_g))  # knows nothing: adding it only hurts
    return out, gt.tolist()


def brute_forward(logits, gt):
    """The forward path by exhaustive search over every one-member extension of each step."""
    names = list(logits)
    best = max(names, key=lambda m: (np.mean(ranks(logits[m], gt) == 1), -names.index(m)))
    members = [best]
    score = np.mean(ranks(logits[best], gt) == 1)
    while True:
        options = [(np.mean(ranks(sum(logits[x] for x in members + [m]), gt) == 1), -names.index(m), m)
                   for m in names if m not in members]
        if not options:
            return members
        s, _, m = max(options)
        if s <= score:
            return members
        members.append(m)
        score = s


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_forward_selection_matches_brute_force(seed):
    logits, gt = logits_of(seed)
    path = forward(logits, gt)
    assert list(path[-1].members) == brute_forward(logits, gt)
    assert len(path) > 2 and "noise" not in path[-1].members  # it stops before adding what hurts
    for step in path:  # each step's R@1 is its members' fused R@1
        assert step.r1 == pytest.approx(r_at_1(sum(logits[m] for m in step.members), gt))
    assert all(b.r1 > a.r1 for a, b in zip(path, path[1:]))  # strictly rising
    # no single unused candidate lifts the final ensemble
    final = sum(logits[m] for m in path[-1].members)
    for m in set(logits) - set(path[-1].members):
        assert r_at_1(final + logits[m], gt) <= path[-1].r1


def test_forward_selection_on_a_hand_computed_case():
    # 2 captions × 2 videos: "a" gets caption 0 right, "b" caption 1, "c" neither; a + b gets both
    gt = [0, 1]
    logits = {"c": np.array([[0.0, 1.0], [1.0, 0.0]]), "a": np.array([[1.0, 0.0], [0.2, 0.0]]),
              "b": np.array([[0.0, 0.5], [0.0, 1.0]])}
    path = forward(logits, gt)
    assert [s.members for s in path] == [("a",), ("a", "b")] and [s.r1 for s in path] == [50.0, 100.0]
    with pytest.raises(ValueError, match="at least two candidates"):
        forward({"a": logits["a"]}, gt)
    with pytest.raises(ValueError, match=r"\[2 captions, videos\]"):
        forward({"a": logits["a"], "b": np.zeros((3, 2))}, gt)


def test_bagged_selection_is_deterministic_and_counts_picks():
    logits, gt = logits_of(5)
    units = [f"v{g}" for g in gt]  # captions of one video stay together
    w = bagged(logits, gt, units, bags=6, seed=1)
    assert w == bagged(logits, gt, units, bags=6, seed=1)
    assert set(w) <= set(logits) and all(isinstance(c, int) and c > 0 for c in w.values())
    assert sum(w.values()) >= 6  # every bag adds at least its first run
    # one bag by hand: the same half, forward selection with replacement on its rows
    rng = np.random.default_rng(3)
    ids = np.unique(np.asarray(units), return_inverse=True)[1]
    rows = np.isin(ids, rng.choice(ids.max() + 1, (ids.max() + 1) // 2, replace=False))
    sub_gt = np.asarray(gt)[rows].tolist()
    names = list(logits)
    picked = [max(names, key=lambda m: r_at_1(logits[m][rows], sub_gt))]
    fused = logits[picked[0]][rows].copy()
    for _ in itertools.count():
        trial = {m: r_at_1(fused + logits[m][rows], sub_gt) for m in names}
        m = max(names, key=lambda k: trial[k])
        if trial[m] <= r_at_1(fused, sub_gt):
            break
        fused, picked = fused + logits[m][rows], picked + [m]
    assert bagged(logits, gt, units, bags=1, seed=3) == {m: picked.count(m) for m in dict.fromkeys(picked)}
    with pytest.raises(ValueError, match="bags must be at least 1"):
        bagged(logits, gt, units, bags=0)
    with pytest.raises(ValueError, match="at least two videos"):
        bagged(logits, gt, ["one"] * len(gt), bags=2)
