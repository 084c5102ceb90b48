"""Worlds with groups of four (base, order, sound, small) and the paraphrase twin of the test captions."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from tvr.synth.captions import SOUND_WORDS, captions_for
from tvr.synth.paraphrase import SYNONYMS, paraphrase
from tvr.synth.stills import StillSampler
from tvr.synth.world import SEQUENCE_BESIDE, WorldConfig, sample_world


@pytest.fixture(scope="module")
def world():
    return sample_world(WorldConfig(videos=600, seed=4, group_size=4, val_fraction=0.05, test_fraction=0.3))


def test_every_test_group_is_a_base_and_three_single_changes(world):
    groups = defaultdict(dict)
    for s in world.scenes:
        if s.split == "test" and s.group is not None:
            groups[s.group][s.tags[0]] = s
    assert len(groups) == 180 // 4
    for members in groups.values():
        assert set(members) == {"base", "order", "sound", "small"}
        base = members["base"]
        large, small, other = base.objects
        assert base.kind == SEQUENCE_BESIDE and large.size == "large" and small.size == "small"
        assert (large.t_start, large.t_end) == (small.t_start, small.t_end) != (other.t_start, other.t_end)
        o = members["order"]
        assert o.sound == base.sound and [x.pair for x in o.objects] == [x.pair for x in base.objects]
        assert [(x.t_start, x.t_end) for x in o.objects] == [(other.t_start, other.t_end)] * 2 + [(large.t_start, large.t_end)]
        assert members["sound"].objects == base.objects and members["sound"].sound != base.sound
        sm = members["small"]
        assert sm.sound == base.sound and sm.objects[0] == large and sm.objects[2] == other
        assert sm.objects[1].pair != small.pair and sm.objects[1].colour != large.colour
        # every member's captions name the sound: the sound near-duplicate would fit them otherwise
        for scene in members.values():
            for caption in captions_for(scene):
                assert any(w in caption.lower() for w in SOUND_WORDS[scene.sound]), caption


def test_half_of_the_groups_are_held_out_and_training_sees_the_composition(world):
    bases = [s for s in world.scenes if s.split == "test" and "base" in s.tags]
    held = [s for s in bases if "heldout" in s.tags]
    assert abs(len(held) - len(bases) / 2) <= 1
    heldout = set(world.heldout)
    for s in held:
        assert s.objects[2].pair in heldout
    train = [s for s in world.scenes if s.split == "train"]
    share = sum(s.kind == SEQUENCE_BESIDE for s in train) / len(train)
    assert 0.1 < share < 0.3
    assert not any(o.pair in heldout for s in train for o in s.objects)


def test_group_size_two_keeps_the_old_worlds():
    assert sample_world(WorldConfig(videos=300, seed=2)) == sample_world(WorldConfig(videos=300, seed=2, group_size=2))
    with pytest.raises(ValueError, match="group_size"):
        WorldConfig(videos=10, group_size=3)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_paraphrase_words_appear_in_no_caption_and_no_still(world):
    originals = [c for s in world.scenes for c in captions_for(s)]
    sampler = StillSampler(0, 32)
    originals += [sampler.caption(sampler.scene()) for _ in range(2000)]
    seen = set().union(*(words(c) for c in originals))
    function_words = {"a", "an", "as", "in", "is", "it", "of", "over", "the", "to", "while", "with", "low", "repeated",
                      "steady", "background", "sound", "something", "are"}
    new = set().union(*(words(v) for v in SYNONYMS.values())) - function_words
    assert not new & seen, sorted(new & seen)
    # and every colour, shape, motion and sound word of the test captions is gone
    replaced = set().union(*(words(k) for k in SYNONYMS)) - function_words - {"at", "not", "no", "does", "do", "any", "all"}
    for s in world.scenes:
        if s.split == "test":
            for c in captions_for(s):
                left = words(paraphrase(c)) & replaced - {"shows", "up"}  # "shows up" means appears
                assert not left, (c, paraphrase(c), left)


def test_paraphrase_by_hand():
    assert paraphrase("A red circle moves to the left, then a violet plus sign rises in silence.") == \
        "A crimson sphere glides westward, then a lilac x mark ascends in a hush."
    assert paraphrase("a blue box sinks") == "an azure block descends"
