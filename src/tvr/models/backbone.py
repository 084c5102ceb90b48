"""The image-text backbone every CLIP-based method starts from: a ViT + a text tower in the CLIP layout.

Defaults are a small from-scratch model for CPUs (64 px, patch 8, 4 layers). The same code runs a
real CLIP: set the widths/layers of the checkpoint, `tokenizer="clip-bpe"` and `pretrained` to an
open_clip/OpenAI-layout state dict (.safetensors, or .pt/.bin read with weights_only=True).
The text side is either the CLIP text tower (`text_encoder="clip"`) or MiniLM (`"minilm"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
from tvr.encoders.tokenizer import SPECIAL_TOKENS, WordTokenizer
from tvr.errors import TvrError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneConfig:
    embed_dim: int = 128  # joint space width (CLIP ViT-B/32: 512)
    patch_size: int = 8
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    text_encoder: Literal["clip", "minilm"] = "clip"
    tokenizer: Literal["words", "clip-bpe"] = "words"
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 32  # tokens incl. start/end [paper: 32 words]
    vocabulary: tuple[str, ...] = ()  # word tokenizer's words (from the training captions), no specials
    hf_tokenizer: str | None = None  # HF tokenizer folder for tokenizer="clip-bpe"
    quick_gelu: bool = True
    pretrained: str | None = None  # open_clip-layout weights for both towers
    freeze_vision_layers: int = 0  # keep the first N ViT blocks (and the patch embedding) fixed

    def with_vocabulary(self, captions: Sequence[str]) -> BackboneConfig:
        """This config with a word vocabulary built from `captions` (kept if one is already set)."""
        if self.tokenizer != "words" or self.text_encoder != "clip" or self.vocabulary:
            return self
        tok = WordTokenizer.build(captions)
        return replace(self, vocabulary=tuple(tok.tokens[len(SPECIAL_TOKENS) : -1]))


class ClipBackbone(nn.Module):
    """Frames → per-frame joint-space embeddings; captions → (EOT embedding, token states, mask)."""

    def __init__(self, config: BackboneConfig, image_size: int) -> None:
        super().__init__()
        self.config = config
        self.image_size = image_size
        vision = VisionConfig(
            image_size=image_size, patch_size=config.patch_size, width=config.vision_width,
            layers=config.vision_layers, heads=config.vision_heads, output_dim=config.embed_dim,
            quick_gelu=config.quick_gelu,
        )
        vocab_size = len(config.vocabulary) + len(SPECIAL_TOKENS) + 1 if config.tokenizer == "words" else 49408
        text = TextConfig(
            context_length=config.context_length if config.tokenizer == "words" else 77,
            vocab_size=vocab_size, width=config.text_width, layers=config.text_layers,
            heads=config.text_heads, output_dim=config.embed_dim, quick_gelu=config.quick_gelu,
        )
        clip = ClipModel(vision, text)
        if config.pretrained:
            _load_pretrained(clip, Path(config.pretrained))
        self.visual = clip.visual
        self.text: nn.Module | None = clip.text if config.text_encoder == "clip" else None
        self.minilm: nn.Module | None = None
        self.text_proj: nn.Linear | None = None
        if config.text_encoder == "minilm":
            from tvr.encoders.minilm import load_minilm

            self.minilm = load_minilm(trainable=True)
            self.text_proj = nn.Linear(_minilm_width(self.minilm), config.embed_dim)
        self._tokenizer = self._make_tokenizer()
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255, persistent=False)
        self._freeze(config.freeze_vision_layers)

    def _make_tokenizer(self):
        c = self.config
        if c.text_encoder == "minilm":
            return None
        if c.tokenizer == "words":
            if not c.vocabulary:
                return None  # filled by adapt_config before training; encode_text checks
            return WordTokenizer(c.vocabulary)
        if not c.hf_tokenizer:
            raise TvrError("backbone.tokenizer 'clip-bpe' needs backbone.hf_tokenizer (a Hugging Face tokenizer folder)")
        from tvr.encoders.tokenizer import HFTokenizer

        return HFTokenizer(c.hf_tokenizer)

    def _freeze(self, n_layers: int) -> None:
        if n_layers <= 0:
            return
        for p in [self.visual.conv1.weight, self.visual.class_embedding, self.visual.positional_embedding]:
            p.requires_grad_(False)
        for p in self.visual.ln_pre.parameters():
            p.requires_grad_(False)
        for block in list(self.visual.blocks)[:n_layers]:
            for p in block.parameters():
                p.requires_grad_(False)

    def encode_frames(self, frames: Tensor, mask: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] uint8, mask [B, T] → projected CLS per frame [B, T, D], padding = 0.

        Only real frames go through the ViT: padding costs nothing and cannot leak into outputs.
        """
        b, t = mask.shape
        if frames.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"frames are {tuple(frames.shape[-2:])}, model expects {self.image_size}px")
        real = frames[mask].float()  # [N, 3, H, W]
        x = (real - self.pixel_mean) / self.pixel_std
        cls, _ = self.visual(x)
        out = cls.new_zeros(b, t, cls.shape[-1])
        out[mask] = cls
        return out

    def encode_text(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled [N, D], token states [N, W, D], mask [N, W])."""
        device = self.pixel_mean.device
        if self.minilm is not None:
            tokens, mask, pooled = _minilm_forward(self.minilm, texts, device)
            assert self.text_proj is not None
            return self.text_proj(pooled), self.text_proj(tokens), mask
        if self._tokenizer is None:
            raise TvrError("the word tokenizer has no vocabulary (this model was never trained)")
        ids, mask = self._tokenizer(list(texts), self.config.context_length)
        assert self.text is not None
        states, eot, valid = self.text(ids.to(device), mask.to(device))
        return eot, states, valid


def _load_pretrained(clip: ClipModel, path: Path) -> None:
    """Load an open_clip/OpenAI-layout state dict into `clip`; never unpickles arbitrary objects."""
    if not path.exists():
        raise TvrError(f"{path}: pretrained weights not found")
    if path.is_dir():
        from tvr.encoders.clip import load_clip_state_dict  # HF directory → open_clip layout

        state = load_clip_state_dict(path)
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        clip.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise TvrError(f"{path}: weights do not fit the configured CLIP shape ({str(exc).splitlines()[0]})") from None


def _minilm_width(model: nn.Module) -> int:
    dim = getattr(model, "dim", None) or getattr(model, "hidden_size", None)
    if dim is None:
        dim = model.get_sentence_embedding_dimension()  # sentence-transformers
    return int(dim)


def _minilm_forward(model: nn.Module, texts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(token states [N, W, H], mask [N, W], mean-pooled [N, H]) from the fine-tunable MiniLM."""
    out = model(list(texts))
    return out.tokens.to(device), out.mask.to(device), out.pooled.to(device)
