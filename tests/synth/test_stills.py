"""Pretraining stills: captions true of the picture, determinism, and the yuv420p round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tvr.synth.captions import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
from tvr.synth.stills import BESIDE_GAP, BESIDE_WORDS, StillSampler, as_video_frame, place_words

# any shape word, as a regex; longest first, so "plus sign" matches whole
SHAPE_WORD = r"\b(" + "|".join(sorted((w for ws in SHAPE_WORDS.values() for w in ws), key=len, reverse=True)) + r")\b"


def test_same_seed_same_stills_and_another_seed_others():
    a_px, a_caps = StillSampler([3, 0], 32).batch(8)
    b_px, b_caps = StillSampler([3, 0], 32).batch(8)
    c_px, c_caps = StillSampler([3, 1], 32).batch(8)
    assert np.array_equal(a_px, b_px) and a_caps == b_caps
    assert not np.array_equal(a_px, c_px) and a_caps != c_caps
    assert a_px.shape == (8, 3, 32, 32) and a_px.dtype == np.uint8


def test_every_object_is_named_with_its_colour_and_shape():
    sampler = StillSampler(0, 64)
    for _ in range(200):
        scene = sampler.scene()
        caption = sampler.caption(scene)
        assert 1 <= len(scene.objects) <= 3
        for obj in scene.objects:
            assert any(w in caption for w in COLOUR_WORDS[obj.colour]), caption
            assert any(w in caption for w in SHAPE_WORDS[obj.shape]), caption
        assert len({o.colour for o in scene.objects}) == len(scene.objects)  # colours tell objects apart


def test_place_words():
    assert place_words(0.2, 0.2) == "at the top left"
    assert place_words(0.5, 0.8) == "at the bottom"
    assert place_words(0.7, 0.5) == "on the right"
    assert place_words(0.5, 0.5) == "in the middle"


def test_yuv420_round_trip_keeps_flat_colours_and_averages_chroma_per_block():
    flat = np.full((4, 4, 3), (200, 40, 90), dtype=np.uint8)
    assert np.abs(as_video_frame(flat).astype(int) - flat).max() <= 1
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)  # one red pixel in a 2×2 block of black: its chroma is spread over the block
    out = as_video_frame(img).astype(int)
    assert out[0, 0, 0] < 255 and out[1, 1, 0] > 0
    # luma is kept per pixel: the red pixel stays the brightest
    luma = out @ np.array([0.299, 0.587, 0.114])
    assert luma.argmax() == 0


def _shape_of_each_colour(text: str) -> dict[str, str]:
    """{colour: shape} read from a still caption ('a tiny violet plus sign at the top and a red box')."""
    words = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
    shapes = sorted(((w, s) for s, ws in SHAPE_WORDS.items() for w in ws), key=lambda p: -len(p[0]))
    found = {}
    for phrase in text.split(": ")[-1].replace(" and ", ", ").split(", "):
        colour = next(words[w] for w in phrase.split() if w in words)
        found[colour] = next(s for w, s in shapes if f" {w}" in f" {phrase}")
    return found


def test_batch_with_no_foils_is_the_plain_batch():
    px, caps = StillSampler([4, 2], 32).batch(16)
    px2, caps2, foils = StillSampler([4, 2], 32).batch_with_foils(16, 0)
    assert np.array_equal(px, px2) and caps == caps2 and foils == []


def test_a_foil_changes_only_shapes_and_is_false_of_its_still():
    sampler = StillSampler(7, 32)
    swaps = 0
    for _ in range(300):
        scene = sampler.scene()
        caption, foil = sampler.caption_and_foil(scene)
        truth = {o.colour: o.shape for o in scene.objects}
        assert _shape_of_each_colour(caption) == truth, caption
        said = _shape_of_each_colour(foil)
        assert said.keys() == truth.keys() and said != truth, (caption, foil)
        changed = [c for c in truth if said[c] != truth[c]]
        assert len(changed) in (1, 2), (caption, foil)
        if len(changed) == 2:  # a trade: the two objects' shapes swapped
            a, b = changed
            assert (said[a], said[b]) == (truth[b], truth[a]), (caption, foil)
            swaps += 1
        masked = [re.sub(SHAPE_WORD, "S", t) for t in (caption, foil)]
        assert masked[0] == masked[1], (caption, foil)  # every other word (size, place, count) is kept
    assert 30 < swaps < 150  # both kinds of foil occur


def test_the_default_stream_is_unchanged():
    """Built backbones are cached by recipe, so the stills a recipe draws must never change."""
    assert StillSampler([0, 0], 64).batch(3)[1] == [
        "a tiny blue plus sign on the right, a red triangle at the bottom right and a small yellow disc on the left",
        "a green disc at the bottom left, a big yellow triangle at the top right and a tiny red triangle at the bottom right",
        "three shapes: a little green disc, a turquoise triangle at the top left and a little blue triangle at the bottom left",
    ]
    a, b = StillSampler([5, 1], 32, beside=0.0).batch(8), StillSampler([5, 1], 32).batch(8)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def _beside_parts(text: str) -> tuple[str, str, str]:
    """('small-phrase', relation, 'large-phrase') of the caption part that ties two objects."""
    for part in text.split(": ")[-1].replace(" and ", ", ").split(", "):
        for relation in BESIDE_WORDS:
            if f" {relation} " in part:
                small, large = part.split(f" {relation} ")
                return small, relation, large
    raise AssertionError(f"no beside relation in {text!r}")


def _names(phrase: str, colour: str, shape: str, size: str) -> bool:
    words = f" {phrase} "
    return (any(f" {w} " in words for w in COLOUR_WORDS[colour]) and any(f" {w} " in words for w in SHAPE_WORDS[shape])
            and any(f" {w} " in words for w in SIZE_WORDS[size]))


def test_beside_stills_put_a_small_object_at_a_large_ones_side_and_say_so():
    sampler = StillSampler(9, 64, beside=1.0)
    thirds = 0
    for _ in range(200):
        scene = sampler.scene()
        large, small, *rest = scene.objects
        thirds += len(rest)
        assert scene.kind == "beside" and (large.size, small.size) == ("large", "small")
        assert small.y0 == large.y0  # side by side, BESIDE_GAP between their edges
        assert abs(abs(small.x0 - large.x0) - (large.half_size + BESIDE_GAP + small.half_size)) < 1e-9
        for obj in scene.objects:  # inside the frame
            assert obj.half_size <= obj.x0 <= 1 - obj.half_size and obj.half_size <= obj.y0 <= 1 - obj.half_size
        caption = sampler.caption(scene)
        small_text, _, large_text = _beside_parts(caption)
        assert _names(small_text, small.colour, small.shape, "small"), caption
        assert _names(large_text, large.colour, large.shape, "large"), caption
        for obj in rest:
            assert any(w in caption for w in COLOUR_WORDS[obj.colour]) and any(w in caption for w in SHAPE_WORDS[obj.shape])
        if caption.startswith("three shapes") or caption.startswith("two shapes"):
            assert caption.startswith("three" if rest else "two"), caption
    assert 50 < thirds < 110  # P_THIRD of them hold a third object elsewhere


def test_beside_fraction_and_beside_foils():
    sampler = StillSampler(4, 32, beside=0.5)
    kinds = [sampler.scene().kind for _ in range(400)]
    assert 160 < kinds.count("beside") < 240 and set(kinds) == {"beside", "still"}
    sampler = StillSampler(2, 32, beside=1.0)
    for _ in range(100):
        scene = sampler.scene()
        caption, foil = sampler.caption_and_foil(scene)
        assert caption != foil
        masked = [re.sub(SHAPE_WORD, "S", t) for t in (caption, foil)]
        assert masked[0] == masked[1], (caption, foil)  # a foil changes shape words only
    with pytest.raises(ValueError, match="beside"):
        StillSampler(0, 32, beside=1.5)


def test_twins_differ_in_shapes_only_and_each_caption_is_true_of_its_own_still():
    sampler = StillSampler(11, 32, beside=0.5)
    trades = 0
    for _ in range(300):
        (scene, caption), (twin, twin_caption) = sampler.twin_scenes()
        for sc, text in ((scene, caption), (twin, twin_caption)):
            parts = text.replace(" next to ", ", ").replace(" beside ", ", ")  # a beside pair: two phrases
            assert _shape_of_each_colour(parts) == {o.colour: o.shape for o in sc.objects}, text
        changed = [(a.shape, b.shape) for a, b in zip(scene.objects, twin.objects, strict=True) if a.shape != b.shape]
        assert len(changed) in (1, 2)
        if len(changed) == 2:  # a trade: the two shapes swapped places
            assert changed[0] == changed[1][::-1]
            trades += 1
        same = [(a.colour, a.size, a.x0, a.y0, a.half_size) for a in scene.objects]
        assert same == [(b.colour, b.size, b.x0, b.y0, b.half_size) for b in twin.objects]
        assert (scene.background, scene.gradient, scene.noise_seed) == (twin.background, twin.gradient, twin.noise_seed)
        masked = [re.sub(SHAPE_WORD, "S", t) for t in (caption, twin_caption)]
        assert masked[0] == masked[1], (caption, twin_caption)  # every other word is kept
    assert 30 < trades < 150  # both kinds of twin occur


def test_a_batch_with_twins_puts_the_pairs_first():
    px, caps, foils = StillSampler([1, 2], 32).batch_with_foils(10, 3, 2)
    assert px.shape == (10, 3, 32, 32) and len(caps) == 10 and len(foils) == 3
    pairs = StillSampler([1, 2], 32)
    first, second = pairs.twin_stills(), pairs.twin_stills()
    assert caps[:4] == [first[0].caption, first[1].caption, second[0].caption, second[1].caption]
    assert np.array_equal(px[1], first[1].pixels.transpose(2, 0, 1))
    for a, b in ((0, 1), (2, 3)):
        assert not np.array_equal(px[a], px[b])  # the shape changed on screen too
        assert re.sub(SHAPE_WORD, "S", caps[a]) == re.sub(SHAPE_WORD, "S", caps[b])
    with pytest.raises(ValueError, match="twin pairs"):
        StillSampler(0, 32).batch_with_foils(4, 0, 3)


def test_attribute_targets_mark_each_shown_object():
    from tvr.synth.stills import ATTRIBUTES, Still, attribute_targets
    from tvr.synth.world import ObjectSpec

    a = ObjectSpec("red", "cross", "small", "static", 0.08, 0.3, 0.3)
    b = ObjectSpec("blue", "circle", "large", "static", 0.2, 0.7, 0.7)
    px = np.zeros((4, 4, 3), np.uint8)
    got = attribute_targets([Still(px, "x", objects=(a, b)), Still(px, "y", objects=(b,))])
    assert got.shape == (2, 48) and len(ATTRIBUTES) == 48
    assert {ATTRIBUTES[i] for i in np.flatnonzero(got[0])} == {("red", "cross", "small"), ("blue", "circle", "large")}
    assert {ATTRIBUTES[i] for i in np.flatnonzero(got[1])} == {("blue", "circle", "large")}
    stills = StillSampler([3, 1], 32).stills(6, 2, 1)
    assert [len(s.objects) for s in stills] == attribute_targets(stills).sum(axis=1).tolist()
