"""Scene sampling: determinism, splits, held-out pairs, near-duplicate groups, geometry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tvr.synth.world import COLOURS, SHAPES, WorldConfig, quota_recipes, sample_world, split_sizes


@pytest.fixture(scope="module")
def world():
    return sample_world(WorldConfig(videos=1500, seed=3, test_fraction=0.3))


def test_sampling_is_deterministic():
    cfg = WorldConfig(videos=200, seed=11)
    assert sample_world(cfg) == sample_world(cfg)
    assert sample_world(cfg).scenes != sample_world(replace(cfg, seed=12)).scenes


@pytest.mark.parametrize(("n", "want"), [(100, (80, 10, 10)), (1000, (800, 100, 100)), (5, (3, 1, 1)), (1, (1, 0, 0))])
def test_split_sizes(n, want):
    assert split_sizes(n, 0.1, 0.1) == want
    world = sample_world(WorldConfig(videos=n))
    got = tuple(sum(s.split == name for s in world.scenes) for name in ("train", "val", "test"))
    assert got == want


def test_heldout_pairs_only_in_test(world):
    heldout = set(world.heldout)
    assert len(heldout) == 4
    # only the combination is new: every colour and every shape of a held-out pair is seen in training
    train_pairs = {o.pair for s in world.scenes if s.split == "train" for o in s.objects}
    assert {c for c, _ in heldout} <= {c for c, _ in train_pairs}
    assert {s for _, s in heldout} <= {s for _, s in train_pairs}
    for s in world.scenes:
        uses = any(o.pair in heldout for o in s.objects)
        if s.split != "test":
            assert not uses, s
        assert uses == ("heldout" in s.tags), s
    test_pairs = {o.pair for s in world.scenes if s.split == "test" for o in s.objects}
    assert heldout <= test_pairs
    assert len(train_pairs) == len(COLOURS) * len(SHAPES) - 4


def test_near_duplicate_groups(world):
    groups: dict[str, list] = {}
    for s in world.scenes:
        if s.group is not None:
            assert s.split == "test"
            groups.setdefault(s.group, []).append(s)
    kinds = {g[0].tags[0] for g in groups.values()}
    assert kinds == {"order", "sound", "small"}
    for members in groups.values():
        assert len(members) == 2
        a, b = members
        assert a.tags == b.tags and len(a.tags) == 1
        assert a.kind == b.kind and a.background == b.background and a.noise_seed == b.noise_seed
        what = a.tags[0]
        if what == "order":
            assert a.kind == "sequence" and a.sound == b.sound
            a_first, a_second = sorted(a.objects, key=lambda o: o.t_start)
            b_first, b_second = sorted(b.objects, key=lambda o: o.t_start)
            assert (a_first.pair, a_second.pair) == (b_second.pair, b_first.pair)
            assert a_first.pair != a_second.pair
        elif what == "sound":
            assert a.sound != b.sound and a.objects == b.objects
        else:
            assert a.kind == "beside" and a.sound == b.sound
            assert a.objects[0] == b.objects[0]
            assert a.objects[1].pair != b.objects[1].pair
            assert replace(a.objects[1], colour="", shape="") == replace(b.objects[1], colour="", shape="")


def test_test_split_mixes_every_distinction(world):
    test = [s for s in world.scenes if s.split == "test"]
    for tag in ("order", "sound", "small", "heldout"):
        assert sum(tag in s.tags for s in test) >= 10, tag
    assert all(not s.tags for s in world.scenes if s.split != "test")


def test_objects_stay_inside_the_frame_and_apart(world):
    progress = np.linspace(0, 1, 11)
    for s in world.scenes:
        for o in s.objects:
            cx, cy = o.centre(progress)
            reach = o.half_size  # every shape fits in its half-size box (render.signed_distance)
            assert np.all(cx - reach >= -1e-9) and np.all(cx + reach <= 1 + 1e-9), o
            assert np.all(cy - reach >= -1e-9) and np.all(cy + reach <= 1 + 1e-9), o
            lo, hi = (0.15, 0.22) if o.size == "large" else (0.06, 0.09)
            assert lo <= o.half_size <= hi
        if s.kind in ("together", "beside"):
            a, b = s.objects
            ax, ay = a.centre(progress)
            bx, by = b.centre(progress)
            gap = np.maximum(np.abs(ax - bx), np.abs(ay - by)) - 1.05 * (a.half_size + b.half_size)
            assert gap.min() > 0, s
        if s.kind in ("sequence", "together", "beside"):
            assert s.objects[0].colour != s.objects[1].colour


@pytest.mark.parametrize("n", [1, 2, 7, 10, 100, 101])
def test_test_recipes_fill_exactly_n_videos_by_quota(n):
    recipes = quota_recipes(n, (0.25, 0.2, 0.25, 0.15, 0.15))
    assert sum(2 if r in ("order", "sound", "small") else 1 for r in recipes) == n
    if n == 100:
        assert sorted(recipes).count("heldout") == 15 and recipes.count("order") == 12


def test_world_has_the_quota_of_each_tag():
    test = [s for s in sample_world(WorldConfig(videos=1000, seed=1)).scenes if s.split == "test"]
    tags = [t for s in test for t in s.tags]
    assert (tags.count("order"), tags.count("sound"), tags.count("small"), tags.count("heldout")) == (24, 20, 24, 15)
