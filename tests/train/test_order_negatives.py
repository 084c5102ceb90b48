"""Order negatives: which captions state an order, the half swap of a clip, and the loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from train_testlib import DotModel

from tvr.data.batch import VideoBatch
from tvr.models.base import TextEmb, VideoEmb
from tvr.models.registry import build, lookup, make_config
from tvr.train.order_negatives import applies_to, half_swapped, order_loss, states_order


@pytest.mark.parametrize(("caption", "ordered"), [
    ("a red circle moves left, then a blue square appears", True),
    ("first a dog barks; afterwards a cat runs", True),
    ("a man sits down after he opens the door", True),
    ("a small green triangle beside a large red circle", False),
    ("the athens marathon", False),  # "then" inside a word is not an order
])
def test_states_order(caption, ordered):
    assert states_order(caption) is ordered


def test_half_swap_moves_the_second_half_of_real_frames_first():
    t = 6
    frames = torch.arange(2 * t, dtype=torch.uint8).view(2, t, 1, 1, 1).expand(2, t, 3, 2, 2).contiguous()
    mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    times = torch.arange(t, dtype=torch.float32).repeat(2, 1)
    out = half_swapped(VideoBatch(frames, mask, times))
    assert out.frames[0, :, 0, 0, 0].tolist() == [3, 4, 5, 0, 1, 2]
    assert out.frames[1, :, 0, 0, 0].tolist() == [8, 9, 10, 6, 7, 11]  # 5 real frames: 2 ↔ 3, padding stays
    assert torch.equal(out.frame_mask, mask) and torch.equal(out.timestamps, times)
    assert frames[0, :, 0, 0, 0].tolist() == list(range(6))  # the input is untouched


def test_half_swap_of_streams_over_their_own_real_positions():
    """Each named stream (its batch entries are named by the whole stream, options included) is
    swapped over its own mask (its length need not be the frames'); other features, masks and
    timestamps stay; a clip whose stream is absent (all masked) keeps it."""
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    frames = torch.arange(8, dtype=torch.uint8).view(2, 4, 1, 1, 1).expand(2, 4, 3, 1, 1).contiguous()
    audio = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    audio_mask = torch.tensor([[True, True, True], [False, False, False]])
    motion = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)
    motion_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    features = {"audio": audio, "audio_mask": audio_mask, "audio_timestamps": torch.rand(2, 3),
                "motion:window=2": motion, "motion:window=2_mask": motion_mask, "other": torch.rand(2, 7)}
    batch = VideoBatch(frames, mask, torch.zeros(2, 4), features)
    out = half_swapped(batch, ("audio", "motion:window=2"))
    assert out.frames[:, :, 0, 0, 0].tolist() == [[2, 3, 0, 1], [5, 6, 4, 7]]  # 3 real frames: [5, 6] first, then [4]
    assert out.features["audio"][0, :, 0].tolist() == [2.0, 4.0, 0.0]  # 3 real: [1, 2] first, then [0]
    assert torch.equal(out.features["audio"][1], audio[1])  # no sound in clip 1: nothing to swap
    assert out.features["motion:window=2"][:, :, 0].tolist() == [[2, 3, 4, 0, 1], [6, 5, 7, 8, 9]]
    for name in ("audio_mask", "audio_timestamps", "motion:window=2_mask", "other"):
        assert torch.equal(out.features[name], features[name])
    only_streams = half_swapped(VideoBatch(None, mask, torch.zeros(2, 4), features), ("motion:window=2",))
    assert only_streams.frames is None
    assert torch.equal(only_streams.features["motion:window=2"], out.features["motion:window=2"])
    with pytest.raises(ValueError, match="objects"):
        half_swapped(batch, ("objects",))


def test_which_models_it_applies_to():
    tiny = {"num_frames": 4, "image_size": 32, "backbone": {"embed_dim": 16, "patch_size": 8, "vision_width": 16,
            "vision_layers": 1, "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2}}

    def model(method):
        cls, _ = lookup(method)
        return build(method, cls.adapt_config(make_config(method, tiny), ["a red circle then a blue square"]))

    assert not applies_to(model("clip4clip-meanp"))  # a mean ignores order
    assert applies_to(model("clip4clip-seqtransf")) and applies_to(model("prost"))
    assert not applies_to(model("mmt"))  # its experts would keep the old order
    assert applies_to(model("mmt"), streams=True)  # unless they are swapped too
    assert not applies_to(model("clip4clip-meanp"), streams=True)


def test_order_loss_against_a_hand_computation():
    text = TextEmb(pooled=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    video = VideoEmb(pooled=torch.tensor([[0.8, 0.6], [0.6, 0.8]]))
    swapped = VideoEmb(pooled=torch.tensor([[0.6, 0.8], [0.8, 0.6]]))
    got = order_loss(DotModel(), text, video, swapped, denominator=4)
    # pair 0: 2·0.8 vs 2·0.6; pair 1: 2·0.8 vs 2·0.6 → −log σ(0.4) each, summed, over 4
    want = 2 * -math.log(1 / (1 + math.exp(-0.4))) / 4
    assert float(got) == pytest.approx(want, rel=1e-6)
    same = order_loss(DotModel(), text, video, video, denominator=2)  # a swap the model cannot see
    assert float(same) == pytest.approx(math.log(2), rel=1e-6)
