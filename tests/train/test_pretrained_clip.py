"""`tvr train --config` with the GPU preset's code path on a TINY random CLIP in each real format.

The checkpoint's weights must be what the backbone starts from (same embeddings as `load_clip`),
its shapes must land in the saved config, and one training step must move them only a little
(the preset's backbone lr scale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from train_testlib import copy_frames, tiny_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoders"))  # tiny checkpoint builders
from encoder_testlib import TINY_VOCAB, make_hf_clip, write_tiny_clip_tokenizer  # noqa: E402

from tvr.encoders.clip import load_clip  # noqa: E402
from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig  # noqa: E402
from tvr.errors import TvrError  # noqa: E402
from tvr.models import load_model  # noqa: E402
from tvr.models.registry import build, lookup, make_config  # noqa: E402

OPEN_CLIP_CFG = {
    "embed_dim": 24, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": TINY_VOCAB, "width": 32, "heads": 2, "layers": 1},
}


def _hf_backbone(tmp: Path) -> dict:
    make_hf_clip(tmp / "hf")
    return {"pretrained": str(tmp / "hf")}


def _open_clip_backbone(tmp: Path) -> dict:
    torch.manual_seed(4)
    model = ClipModel(VisionConfig(32, 8, 64, 1, 2, 24), TextConfig(16, TINY_VOCAB, 32, 1, 2, 24))
    (tmp / "tiny-vit.json").write_text(json.dumps(OPEN_CLIP_CFG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "weights.safetensors"))
    write_tiny_clip_tokenizer(tmp / "tok")
    return {"pretrained": str(tmp / "tiny-vit.json"), "pretrained_weights": str(tmp / "weights.safetensors"),
            "hf_tokenizer": str(tmp / "tok")}


@pytest.mark.parametrize("make", [_hf_backbone, _open_clip_backbone], ids=["hf-folder", "open_clip"])
def test_train_from_tiny_pretrained_clip(make, run_cli, tmp_path, tmp_path_factory):
    shared = tiny_run(tmp_path_factory)  # same frames spec (T=4, 32 px): reuse its decoded frames
    backbone = make(tmp_path)
    method = "clip4clip-seqtransf"
    model_cfg = {"num_frames": 4, "backbone": backbone, "temporal_layers": 1}
    cfg = lookup(method)[0].adapt_config(make_config(method, model_cfg), ["unused"])
    assert cfg.image_size == 32 and cfg.backbone.embed_dim == 24 and cfg.backbone.tokenizer == "clip-bpe"
    ref, _, pre = load_clip(backbone["pretrained"], checkpoint=backbone.get("pretrained_weights"))
    model = build(method, cfg).eval()
    frames = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        got = model.backbone.encode_frames(frames, torch.ones(2, 4, dtype=torch.bool))
        x = (frames.flatten(0, 1).float() / 255 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
        torch.testing.assert_close(got.flatten(0, 1), ref.visual(x)[0], atol=1e-4, rtol=1e-4)
        text = model.backbone.encode_text(["a red circle", "two squares"])[0]
        ids, mask = model.backbone._tokenizer(["a red circle", "two squares"], 16)
        torch.testing.assert_close(text, ref.text(ids, mask)[1], atol=1e-5, rtol=1e-5)

    config = tmp_path / "clip.json"
    config.write_text(json.dumps({"preset": "clip-vit-b32", "model": model_cfg,
                                  "train": {"epochs": 1, "batch_size": 16, "workers": 1}}))
    run = tmp_path / "run"
    copy_frames(shared, run)
    r = run_cli("train", shared.parent / "w" / "all.jsonl", "--method", method, "--out", run, "--config", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 1
    trained = load_model(run)
    assert trained.config == cfg
    before, after = ref.visual.state_dict(), trained.backbone.visual.state_dict()
    diffs = [float((after[k] - before[k]).abs().max()) for k in before]
    assert max(diffs) > 0 and max(diffs) < 1e-4  # one step at lr 1e-4 × backbone scale 1e-3


def test_fine_tune_a_pretrained_clip_at_another_image_size(run_cli, tmp_path, tmp_path_factory):
    """`backbone.image_size` trains a 32 px checkpoint at 48 px: the saved config says 48, the positional
    embeddings start as transformers' interpolation of the checkpoint's, and the run reloads at 48 px."""
    shared = tiny_run(tmp_path_factory)
    hf = make_hf_clip(tmp_path / "hf")
    method = "clip4clip-meanp"
    model_cfg = {"num_frames": 4, "backbone": {"pretrained": str(tmp_path / "hf"), "image_size": 48}}
    cfg = lookup(method)[0].adapt_config(make_config(method, model_cfg), ["unused"])
    assert cfg.image_size == 48 and cfg.backbone.image_size == 48
    odd = {**model_cfg, "backbone": {**model_cfg["backbone"], "image_size": 44}}
    with pytest.raises(TvrError, match="44 is not a multiple of .*patch size 8"):
        lookup(method)[0].adapt_config(make_config(method, odd), ["unused"])
    model = build(method, cfg).eval()
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = hf.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
        ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
        torch.testing.assert_close(model.backbone.visual(pixels)[0], ref, atol=1e-5, rtol=0)

    config = tmp_path / "clip.json"
    config.write_text(json.dumps({"preset": "clip-vit-b32", "model": model_cfg,
                                  "train": {"epochs": 1, "batch_size": 16, "workers": 1}}))
    run = tmp_path / "run"
    r = run_cli("train", shared.parent / "w" / "all.jsonl", "--method", method, "--out", run, "--config", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    trained = load_model(run)
    assert trained.config == cfg and trained.input_spec().image_size == 48
    assert trained.backbone.visual.positional_embedding.shape == (1 + 6 * 6, 48)
    moved = (trained.backbone.visual.positional_embedding - model.backbone.visual.positional_embedding).detach().abs().max()
    assert 0 < float(moved) < 1e-4  # trained from the resampled table (one step, backbone lr scale 1e-3)
