"""InfoNCE against a float64 loop; the lr schedule against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from tvr.models.losses import symmetric_infonce
from tvr.train.schedule import lr_factor


def test_symmetric_infonce_matches_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 5, generator=g, dtype=torch.float64) * 10
    expect = 0.0
    for i in range(5):
        t2v = -math.log(math.exp(logits[i, i]) / sum(math.exp(logits[i, j]) for j in range(5)))
        v2t = -math.log(math.exp(logits[i, i]) / sum(math.exp(logits[j, i]) for j in range(5)))
        expect += (t2v + v2t) / 2 / 5
    assert float(symmetric_infonce(logits)) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError):
        symmetric_infonce(torch.zeros(2, 3))


def test_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0) == pytest.approx(1.0)
