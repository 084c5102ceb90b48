"""Sound negatives: which captions name a sound, which batch-mate lends its audio, the re-dubbed clip
and the loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from train_testlib import DotModel

from tvr.data.batch import VideoBatch
from tvr.models.base import TextEmb, VideoEmb
from tvr.models.registry import build, lookup, make_config
from tvr.train.sound_negatives import audio_streams, donors, redubbed, sound_loss, sound_of


@pytest.mark.parametrize(("caption", "sound"), [
    ("a red circle moves left in silence", "silence"),
    ("With no sound at all, a blue ball shows up.", "silence"),
    ("a green cross rises while beeps sound", "beep"),
    ("over a steady hum, a square falls", "hum"),
    ("a man is talking to the camera", "speech"),
    ("a dog barking at a bell ringing", None),  # two sounds: which one the clip's audio holds is unclear
    ("a small green triangle beside a large red circle", None),
    ("the bark of an old tree", None),  # the tree's bark is not a sound
    ("the humble chef", None),  # "hum" inside a word is not a sound
])
def test_sound_of(caption, sound):
    assert sound_of(caption) == sound


def test_donors_name_another_sound_and_never_the_row_itself():
    captions = ["a ball in silence", "a box beeping", "a red cross", "a star, silently", "a hum and a cube", "quietly"]
    # rows 0, 1, 3, 4, 5 name a sound; each takes the first later row (cyclically) naming another one
    assert donors(captions) == [(0, 1), (1, 3), (3, 4), (4, 5), (5, 1)]
    assert donors(["in silence", "silently", "a cat"]) == []  # one sound only: nothing to lend
    assert donors([]) == []


def _batch() -> VideoBatch:
    b, k = 3, 2
    feats = {
        "audio": torch.arange(b * k * 2, dtype=torch.float32).view(b, k, 2),
        "audio_mask": torch.tensor([[True, True], [True, False], [False, False]]),
        "audio_timestamps": torch.arange(b * k, dtype=torch.float32).view(b, k),
        "motion": torch.arange(b * k * 3, dtype=torch.float32).view(b, k, 3) + 100,
        "motion_mask": torch.ones(b, k, dtype=torch.bool),
    }
    return VideoBatch(torch.zeros(b, 2, 3, 4, 4, dtype=torch.uint8), torch.ones(b, 2, dtype=torch.bool),
                      torch.zeros(b, 2), feats, keys=["a", "b", "c"])


def test_redubbed_takes_only_the_donors_sound():
    batch = _batch()
    out = redubbed(batch, [0, 2], [1, 0], ["audio"])
    assert out.keys == ["a", "c"]  # still the clips at rows 0 and 2 ...
    assert torch.equal(out.frames, batch.frames[[0, 2]]) and torch.equal(out.features["motion"], batch.features["motion"][[0, 2]])
    for key in ("audio", "audio_mask", "audio_timestamps"):  # ... with the sound of rows 1 and 0
        assert torch.equal(out.features[key], batch.features[key][[1, 0]])
    assert torch.equal(batch.features["audio"], torch.arange(12, dtype=torch.float32).view(3, 2, 2))  # input untouched


def test_which_models_have_a_sound_stream():
    tiny = {"num_frames": 4, "image_size": 32, "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16,
            "vision_layers": 1, "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2}}

    def model(method, **extra):
        cls, _ = lookup(method)
        return build(method, cls.adapt_config(make_config(method, {**tiny, **extra}), ["a red circle in silence"]))

    assert audio_streams(model("clip4clip-meanp")) == ()
    assert audio_streams(model("mmt", d_model=16, heads=2, ffn=32, layers=1, text_trainable_layers=0)) == ("audio",)
    assert audio_streams(model("mmt", experts=["appearance", "motion"], d_model=16, heads=2, ffn=32, layers=1,
                               text_trainable_layers=0)) == ()


def test_sound_loss_against_a_hand_computation():
    text = TextEmb(pooled=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    video = VideoEmb(pooled=torch.tensor([[0.8, 0.6], [0.6, 0.8]]))
    dubbed = VideoEmb(pooled=torch.tensor([[0.6, 0.8], [0.8, 0.6]]))
    got = sound_loss(DotModel(), text, video, dubbed, denominator=4)
    want = 2 * -math.log(1 / (1 + math.exp(-0.4))) / 4  # DotModel's scale is 2: each pair −log σ(2·0.8 − 2·0.6)
    assert float(got) == pytest.approx(want, rel=1e-6)
