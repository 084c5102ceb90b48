"""clip / random-tiny / pixels video encoders through the registry, on hand-made DecodedVideos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from encoder_testlib import random_frames, video_from_frames

from tvr.encoders.registry import create_text_encoder, create_video_encoder, encoder_names
from tvr.errors import TvrError, UnknownName


def test_clip_encoder_matches_hf_on_frames(hf_clip_dir):
    directory, hf = hf_clip_dir
    enc = create_video_encoder("clip", checkpoint=str(directory), device="cpu", patch_tokens="true", batch_size="4")
    assert enc.decode_spec().num_frames == 12 and enc.decode_spec().size == 32
    videos = [video_from_frames(random_frames(n, seed=n)) for n in (3, 5, 1)]
    out = enc.encode(videos)
    for video, feats in zip(videos, out):
        x = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
        with torch.no_grad():
            ref = hf.get_image_features(pixel_values=x)
        ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
        np.testing.assert_allclose(feats["frame_cls"], ref.numpy(), atol=1e-5)
        assert feats["frame_cls"].dtype == np.float32
        assert feats["patch_tokens"].shape == (len(video.frames), 16, 24) and feats["patch_tokens"].dtype == np.float16
        np.testing.assert_allclose(feats["timestamps"], video.timestamps_s)
    assert enc.version.startswith("clip-") and "p1" in enc.version
    other = create_video_encoder("clip", checkpoint=str(directory), device="cpu", num_frames=8)
    assert other.version != enc.version


def test_clip_text_encoder(hf_clip_dir):
    directory, hf = hf_clip_dir
    enc = create_text_encoder("clip", checkpoint=str(directory), device="cpu")
    feats = enc.encode_text(["a dog", "a red ball rolls"])
    lengths = feats.mask.sum(axis=1).tolist()
    assert lengths[0] == 6  # sot a</w> d o g</w> eot
    assert feats.tokens.shape == (2, max(lengths), 24)  # trimmed to the longest caption
    ids, mask = enc.tokenizer(["a dog", "a red ball rolls"], 16)
    with torch.no_grad():
        ref = hf.get_text_features(input_ids=ids, attention_mask=mask.long())
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    np.testing.assert_allclose(feats.pooled, ref.numpy(), atol=1e-5)


def test_random_tiny_is_deterministic_and_batch_independent():
    state = torch.random.get_rng_state()
    a = create_video_encoder("random-tiny", batch_size=4)
    b = create_video_encoder("random-tiny", batch_size=1000)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    videos = [video_from_frames(random_frames(n, size=48, seed=n)) for n in (2, 7, 3)]
    out_a, out_b = a.encode(videos), b.encode(videos)
    single = [a.encode([v])[0] for v in videos]
    for x, y, z in zip(out_a, out_b, single):
        assert x["frame_cls"].shape == (len(z["frame_cls"]), 32)
        np.testing.assert_allclose(x["frame_cls"], y["frame_cls"], atol=1e-6)
        np.testing.assert_allclose(x["frame_cls"], z["frame_cls"], atol=1e-6)
    assert a.version == b.version
    c = create_video_encoder("random-tiny", seed=1)
    assert c.version != a.version
    assert not np.allclose(c.encode(videos[:1])[0]["frame_cls"], out_a[0]["frame_cls"])
    # golden: weights are a pure function of the seed
    assert float(a.model.visual.class_embedding.sum()) == pytest.approx(-2.19995, abs=1e-4)


def test_random_tiny_text_encoder_shapes_and_padding():
    enc = create_text_encoder("random-tiny")
    feats = enc.encode_text(["one two three", "one"])
    assert feats.tokens.shape == (2, 5, 32) and feats.pooled.shape == (2, 32)
    assert feats.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    alone = enc.encode_text(["one"])
    np.testing.assert_allclose(alone.pooled[0], feats.pooled[1], atol=1e-5)  # padding does not leak


def test_pixels_encoder_resizes_and_keeps_uint8():
    enc = create_video_encoder("pixels", size=16)
    frames = np.zeros((3, 40, 60, 3), np.uint8)
    frames[:, :, 30:] = 200  # right half bright (after centre crop: right half of a 40x40 window)
    out = enc.encode([video_from_frames(frames)])[0]
    assert out["frames"].shape == (3, 16, 16, 3) and out["frames"].dtype == np.uint8
    assert out["frames"][:, :, :7].max() == 0 and out["frames"][:, :, 9:].min() == 200
    same = enc.encode([video_from_frames(random_frames(2, size=16))])[0]
    np.testing.assert_array_equal(same["frames"], random_frames(2, size=16))


def test_registry_names_and_errors():
    names = encoder_names()
    assert {"clip", "random-tiny", "audio", "motion", "pixels"} <= set(names["video"])
    assert {"clip", "random-tiny", "minilm"} <= set(names["text"])
    with pytest.raises(UnknownName, match="nope"):
        create_video_encoder("nope")
    with pytest.raises(TvrError, match="no option 'sizee'"):
        create_video_encoder("pixels", sizee=3)
    with pytest.raises(TvrError, match="expects int"):
        create_video_encoder("pixels", size="big")
    with pytest.raises(TvrError, match="checkpoint=PATH"):
        create_video_encoder("clip")
    assert create_video_encoder("pixels", fps="none").config.fps is None


def test_cli_lists_encoders(run_cli):
    import json

    r = run_cli("encoders", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert {(row["name"], row["kind"]) for row in rows} >= {("clip", "video"), ("minilm", "text"), ("audio", "video")}
    table = run_cli("encoders")
    assert table.exit_code == 0 and table.stdout == "" and "random-tiny" in table.stderr
