"""Real checkpoint formats load into ClipModel and reproduce the saving model's embeddings (1e-5)."""

from __future__ import annotations

import json

import pytest
import torch
from encoder_testlib import TINY_VOCAB, make_hf_clip
from safetensors.torch import save_file

from tvr.encoders.clip import load_clip, read_state_dict
from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
from tvr.encoders.tokenizer import HFTokenizer
from tvr.errors import TvrError

CAPTIONS = ["a red circle moves left", "two squares", ""]


def _pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _check_against_hf(model: ClipModel, hf, tok) -> None:
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    ids, mask = tok(CAPTIONS, 16)
    with torch.no_grad():
        ref_img = _pooled(hf.get_image_features(pixel_values=pixels))
        ref_txt = _pooled(hf.get_text_features(input_ids=ids, attention_mask=mask.long()))
        hidden = hf.vision_model(pixel_values=pixels).last_hidden_state
        ref_patches = hf.visual_projection(hf.vision_model.post_layernorm(hidden))[:, 1:]
        cls, patches = model.visual(pixels)
        txt = model.text(ids, mask)[1]
    torch.testing.assert_close(cls, ref_img, atol=1e-5, rtol=0)
    torch.testing.assert_close(patches, ref_patches, atol=1e-5, rtol=0)
    torch.testing.assert_close(txt, ref_txt, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.logit_scale.detach(), hf.logit_scale.detach())


def test_hugging_face_clip_folder_round_trip(hf_clip_dir):
    directory, hf = hf_clip_dir
    model, tok, pre = load_clip(directory)
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == TINY_VOCAB
    assert pre.image_size == 32 and pre.mean == (0.5, 0.4, 0.3) and pre.std == (0.2, 0.25, 0.3)
    assert model.vision_config.quick_gelu and model.vision_config.heads == 4
    ids, mask = tok(["a cat"], 16)
    assert mask[0].tolist() == [True] * 6 + [False] * 10  # sot a</w> c a t</w> eot
    assert ids[0, 0] == TINY_VOCAB - 2 and ids[0, 5] == TINY_VOCAB - 1 and ids[0, 6:].eq(0).all()
    _check_against_hf(model, hf, tok)


@pytest.mark.parametrize("size", [48, 24])
def test_resized_image_tower_matches_transformers_interpolated_positions(hf_clip_dir, size):
    """Fine-tuning at another resolution: the same embeddings as transformers' `interpolate_pos_encoding`
    (32 px checkpoint, patch 8: the 4×4 position grid resampled to 6×6 or 3×3)."""
    directory, hf = hf_clip_dir
    model, _, _ = load_clip(directory)
    table = model.visual.positional_embedding.detach().clone()
    model.resize_images(32)  # its own size: nothing changes
    assert torch.equal(model.visual.positional_embedding, table)
    model.resize_images(size)
    grid = size // 8
    assert model.vision_config.image_size == size and model.visual.positional_embedding.shape == (1 + grid * grid, 48)
    assert torch.equal(model.visual.positional_embedding[0], table[0])  # the CLS position is kept
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = _pooled(hf.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True))
        torch.testing.assert_close(model.encode_image(pixels), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        model.resize_images(30)


def test_hugging_face_gelu_model_without_tokenizer(tmp_path, hf_clip_dir):
    hf = make_hf_clip(tmp_path, act="gelu", seed=5, tokenizer=False)
    model, tok, _ = load_clip(tmp_path)
    assert tok is None and not model.vision_config.quick_gelu
    _check_against_hf(model, hf, HFTokenizer(hf_clip_dir[0]))


# --- open_clip formats -------------------------------------------------------------------------

OPEN_CLIP_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 128, "layers": 2, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": TINY_VOCAB, "width": 64, "heads": 1, "layers": 2},
}


def _open_clip_model(quick_gelu: bool = False) -> ClipModel:
    torch.manual_seed(7)
    model = ClipModel(
        VisionConfig(image_size=32, patch_size=8, width=128, layers=2, heads=2, output_dim=24, quick_gelu=quick_gelu),
        TextConfig(context_length=16, vocab_size=TINY_VOCAB, width=64, layers=2, heads=1, output_dim=24, quick_gelu=quick_gelu),
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _same_embeddings(a: ClipModel, b: ClipModel) -> None:
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, 32, 32)
    ids = torch.randint(1, TINY_VOCAB - 1, (2, 9))
    ids[:, 8] = TINY_VOCAB - 1
    with torch.no_grad():
        for x, y in zip(a.visual(pixels), b.visual(pixels)):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.encode_text(ids), b.encode_text(ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_clip_config_plus_checkpoint(tmp_path, suffix):
    saving = _open_clip_model()
    cfg_path = tmp_path / "tiny-vit.json"
    cfg_path.write_text(json.dumps(OPEN_CLIP_CFG))
    ckpt = tmp_path / f"weights{suffix}"
    sd = {k: v.contiguous() for k, v in saving.state_dict().items()}
    save_file(sd, str(ckpt)) if suffix == ".safetensors" else torch.save(sd, ckpt)
    model, tok, pre = load_clip(cfg_path, checkpoint=ckpt)
    assert tok is None and pre.image_size == 32
    assert model.vision_config.heads == 2 and not model.vision_config.quick_gelu
    _same_embeddings(model, saving)
    wrong_act, _, _ = load_clip(cfg_path, checkpoint=ckpt, quick_gelu=True)  # activation matters
    with pytest.raises(AssertionError):
        _same_embeddings(wrong_act, saving)


def test_training_checkpoint_wrapper_and_inferred_config(tmp_path, hf_clip_dir):
    saving = _open_clip_model(quick_gelu=True)
    ckpt = tmp_path / "epoch_3.pt"
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saving.state_dict().items()}}
    torch.save(wrapped, ckpt)
    model, _, _ = load_clip(ckpt)  # no config: inferred from shapes (heads = width/64, QuickGELU)
    assert model.vision_config == saving.vision_config and model.text_config == saving.text_config
    _same_embeddings(model, saving)
    model2, tok, _ = load_clip(ckpt, tokenizer=hf_clip_dir[0])
    assert isinstance(tok, HFTokenizer)


def test_open_clip_hub_folder(tmp_path):
    saving = _open_clip_model(quick_gelu=True)
    cfg = {"model_cfg": {**OPEN_CLIP_CFG, "quick_gelu": True}, "preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file(saving.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    model, _, pre = load_clip(tmp_path)
    assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (0.4, 0.5, 0.6)
    _same_embeddings(model, saving)


class _NotATensor:
    pass


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(TvrError, match="does not exist"):
        load_clip(tmp_path / "nope")
    with pytest.raises(TvrError, match="needs its weights"):
        load_clip("ViT-B-32")
    with pytest.raises(TvrError, match="unknown open_clip model"):
        load_clip("ViT-Q-99", checkpoint=__file__)
    evil = tmp_path / "evil.pt"
    torch.save({"x": _NotATensor()}, evil)  # needs unpickling a class: weights_only refuses
    with pytest.raises(TvrError, match="cannot read weights"):
        read_state_dict(evil)
    saving = _open_clip_model()
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({**OPEN_CLIP_CFG, "embed_dim": 32}))
    ckpt = tmp_path / "w.safetensors"
    save_file(saving.state_dict(), str(ckpt))
    with pytest.raises(TvrError, match="shape"):
        load_clip(cfg_path, checkpoint=ckpt)
    cfg_path.write_text(json.dumps(OPEN_CLIP_CFG))
    partial = {k: v for k, v in saving.state_dict().items() if not k.startswith("ln_final")}
    save_file(partial, str(ckpt))
    with pytest.raises(TvrError, match="missing: ln_final"):
        load_clip(cfg_path, checkpoint=ckpt)
