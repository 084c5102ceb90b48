"""Text foils: which words a foil changes, that it is deterministic, and the loss against a hand computation."""

from __future__ import annotations

import math
import re

import pytest
import torch
from train_testlib import DotModel

from tvr.models.base import TextEmb, VideoEmb
from tvr.train.text_foils import attribute_words, foil, foil_loss, foils_of

CAPTIONS = [
    "a little red cross beside a large green plus sign, then a blue ball moves right",
    "A yellow disc remains in place while a cyan cross shows up.",
    "in silence, a big green object with a tiny red box beside it",
    "Red triangle.",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.mark.parametrize("caption", CAPTIONS)
@pytest.mark.parametrize("seed", range(6))
def test_a_foil_swaps_two_values_of_a_class_or_replaces_one(caption, seed):
    out = foil(caption, seed)
    assert out is not None and out != caption
    before, after = attribute_words(caption), attribute_words(out)
    assert [h[0] for h in before] == [h[0] for h in after]  # the same classes in the same places
    changed = [(a[1], b[1]) for a, b in zip(before, after, strict=True) if a[1] != b[1]]
    if len(changed) == 2:  # a swap: two words of one class trade values, nothing else moves
        (x, y), (u, v) = changed
        assert (x, y) == (v, u) and x != y
        assert sorted(_words(out)) == sorted(_words(caption))
    else:  # a replacement: one word now names another value of its class
        assert len(changed) == 1 and changed[0][0] != changed[0][1]
    outside = re.sub(r"\b(red|green|blue|yellow|cyan|purple|cross|plus sign|ball|disc|box|triangle|circle|square"
                     r"|little|large|big|tiny|small)\b", "_", out, flags=re.IGNORECASE)
    assert outside == re.sub(r"\b(red|green|blue|yellow|cyan|purple|cross|plus sign|ball|disc|box|triangle|circle"
                             r"|square|little|large|big|tiny|small)\b", "_", caption, flags=re.IGNORECASE)


def test_synonyms_are_one_value_and_capitals_stay():
    # "ball" and "disc" both name a circle: trading them would not be a foil, so the only swap is of colours
    hits = attribute_words("a red ball and a blue disc")
    assert [(h[0], h[1]) for h in hits] == [("colour", "red"), ("shape", "circle"), ("colour", "blue"), ("shape", "circle")]
    seen = {foil("a red ball and a blue disc", s) for s in range(40)}
    assert "a blue ball and a red disc" in seen
    assert "a red disc and a blue ball" not in seen
    assert all(f[0].isupper() for f in {foil("Red triangle.", s) for s in range(20)})


def test_deterministic_and_none_without_attribute_words():
    assert [foil(c, 3) for c in CAPTIONS] == [foil(c, 3) for c in CAPTIONS]
    assert len({foil(CAPTIONS[0], s) for s in range(20)}) > 1  # the seed matters
    assert foil("a man talks to a woman in a kitchen") is None
    rows, foils = foils_of(["a dog runs", CAPTIONS[1], "people sing", CAPTIONS[3]], seed=1)
    assert rows == [1, 3] and foils == [foil(CAPTIONS[1], 1), foil(CAPTIONS[3], 1)]


def test_foil_loss_against_a_hand_computation():
    text = TextEmb(pooled=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    foils = TextEmb(pooled=torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    video = VideoEmb(pooled=torch.tensor([[0.8, 0.6], [0.3, 0.9]]))
    got = foil_loss(DotModel(), text, foils, video, denominator=3)
    # pair 0: 2·0.8 vs 2·0.6 → −log σ(0.4); pair 1: 2·0.9 vs 2·0.3 → −log σ(1.2); summed, over 3
    want = (-math.log(1 / (1 + math.exp(-0.4))) - math.log(1 / (1 + math.exp(-1.2)))) / 3
    assert float(got) == pytest.approx(want, rel=1e-6)
    blind = foil_loss(DotModel(), text, text, video, denominator=2)  # a foil the model cannot tell apart
    assert float(blind) == pytest.approx(math.log(2), rel=1e-6)
