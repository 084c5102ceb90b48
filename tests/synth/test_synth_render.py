"""Frames and sound agree with the scene: colours per half, areas, sizes, motion, audio class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synth_checks import classify_sound, colour_counts, dominant_colour

from tvr.synth.render import frame_times, render_frames, signed_distance
from tvr.synth.sound import render_audio
from tvr.synth.world import COLOURS, SOUNDS, WorldConfig, sample_world

SIZE, SECONDS, FPS = 64, 3.0, 8.0


@pytest.fixture(scope="module")
def scenes():
    return sample_world(WorldConfig(videos=300, seed=5)).scenes


def test_sequence_colours_follow_the_order(scenes):
    seq = [s for s in scenes if s.kind == "sequence"][:25]
    assert len(seq) >= 20
    for s in seq:
        frames = render_frames(s, SIZE, SECONDS, FPS)
        half = len(frames) // 2
        first, second = sorted(s.objects, key=lambda o: o.t_start)
        assert dominant_colour(frames[:half]) == first.colour
        assert dominant_colour(frames[half:]) == second.colour
        # and the first object is really gone in the second half
        assert all(colour_counts(f)[first.colour] == 0 for f in frames[half:])


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "cross"])
def test_shape_areas_match_geometry(shape):
    r = 20.0
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float64) + 0.5
    alpha = np.clip(0.5 - signed_distance(shape, xx - 100, yy - 100, r), 0, 1)
    expected = {
        "circle": math.pi * r * r,
        "square": (1.7 * r) ** 2,
        "triangle": 0.5 * (2.0 * r) * (1.8 * r),
        "cross": 2 * (1.9 * r) * (0.66 * r) - (0.66 * r) ** 2,
    }[shape]
    assert alpha.sum() == pytest.approx(expected, rel=0.01)


def test_object_sizes_and_motion(scenes):
    singles = [s for s in scenes if s.kind == "single"][:30]
    for s in singles:
        (obj,) = s.objects
        frames = render_frames(s, SIZE, SECONDS, FPS).astype(np.float64)
        rgb = np.asarray(COLOURS[obj.colour], dtype=np.float64)
        masks = np.linalg.norm(frames - rgb, axis=-1) < 60  # [T, H, W]
        ys, xs = np.nonzero(masks[0])
        extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / SIZE
        lo, hi = (0.24, 0.46) if obj.size == "large" else (0.09, 0.20)  # squares: side 1.7 half-sizes
        assert lo <= extent <= hi, (obj, extent)
        centroids = [np.argwhere(m).mean(0) for m in masks]  # (y, x)
        dy, dx = centroids[-1] - centroids[0]
        moved = {"left": -dx, "right": dx, "up": -dy, "down": dy}
        if obj.motion == "static":
            assert abs(dx) < 1 and abs(dy) < 1
        else:
            assert moved[obj.motion] > 0.25 * SIZE, (obj, dx, dy)


def test_frame_times():
    np.testing.assert_allclose(frame_times(3.0, 8.0), np.arange(24) / 24)


@pytest.mark.parametrize("sound", SOUNDS)
def test_sound_tracks_are_what_they_claim(scenes, sound):
    for s in [s for s in scenes if s.sound == sound][:5]:
        audio = render_audio(s, SECONDS, 16_000)
        assert audio.dtype == np.float32 and audio.shape == (48_000,)
        assert np.abs(audio).max() <= 1.0
        assert classify_sound(audio, 16_000) == sound
