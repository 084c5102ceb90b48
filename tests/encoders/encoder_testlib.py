"""Shared builders for encoder tests: tiny checkpoints in real formats and hand-made decoded videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tvr.io.decoded import DecodedVideo

TINY_VOCAB = 514  # 256 byte symbols + 256 word-final symbols + <|startoftext|> + <|endoftext|>


def _byte_symbols() -> list[str]:
    """The printable stand-in character for each byte, as byte-level BPE vocabularies use."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_tiny_clip_tokenizer(directory: Path) -> None:
    """A real CLIPTokenizer with no merges (one token per character), saved the Hugging Face way."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    chars = _byte_symbols()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt")).save_pretrained(str(directory))


def make_hf_clip(directory: Path, *, act: str = "quick_gelu", seed: int = 0, tokenizer: bool = True):
    """Save a tiny random transformers CLIPModel (+ tokenizer, preprocessor config); returns the model."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=TINY_VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=TINY_VOCAB - 2,
            eos_token_id=TINY_VOCAB - 1,
            pad_token_id=TINY_VOCAB - 1,
            hidden_act=act,
        ),
        vision_config=dict(
            hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, hidden_act=act
        ),
        projection_dim=24,
    )
    model = CLIPModel(config).eval()
    with torch.no_grad():  # random LayerNorm affine params so a swapped weight/bias would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(directory))
    pre = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "crop_size": {"height": 32, "width": 32}}
    (directory / "preprocessor_config.json").write_text(json.dumps(pre))
    if tokenizer:
        write_tiny_clip_tokenizer(directory)
    return model


def video_from_frames(frames: np.ndarray, fps: float = 4.0, start_s: float = 0.0, audio: np.ndarray | None = None) -> DecodedVideo:
    t = len(frames)
    return DecodedVideo(
        frames=frames,
        timestamps_s=start_s + np.arange(t, dtype=np.float64) / fps,
        duration_s=t / fps,
        audio=audio,
        has_audio_stream=audio is not None,
        start_s=start_s,
    )


def random_frames(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
