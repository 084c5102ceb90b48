"""The image-text backbone every CLIP-based method starts from: a ViT + a text tower in the CLIP layout.

Defaults are a small from-scratch model for CPUs (64 px, patch 8, 4 layers). The same code runs a
real CLIP: set `pretrained` to anything `tvr.encoders.clip.load_clip` reads (a Hugging Face CLIPModel
folder, an open_clip hub folder, a bare OpenAI/open_clip state dict, or an open_clip model name /
config JSON together with `pretrained_weights`); `with_pretrained_shape` copies the checkpoint's tower
shapes into the config so the saved config describes the model exactly.
The text side is either the CLIP text tower (`text_encoder="clip"`) or MiniLM (`"minilm"`, fine-tuned).
`text_context="minilm"` adds to the tower's pooled embedding a trained reading of a frozen MiniLM's
contextual states (`models/text_context.py`), which know word order and English words the tower does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
from tvr.encoders.frames import CLIP_MEAN, CLIP_STD, pixel_scale
from tvr.encoders.tokenizer import SPECIAL_TOKENS, WordTokenizer
from tvr.errors import TvrError

UNTRAINED_PARTS = ("text_context.",)  # backbone parameters that start untrained: they learn at the full lr


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
    hf_tokenizer: str | None = None  # tokenizer folder for "clip-bpe" (default with `pretrained`: beside the weights)
    quick_gelu: bool = True
    pretrained: str | None = None  # CLIP checkpoint (folder / weights file / open_clip name or config JSON)
    pretrained_weights: str | None = None  # state-dict file when `pretrained` is an open_clip name or config JSON
    image_size: int | None = None  # train at this size (overrides the model's image_size and the checkpoint's
    # own size; a pretrained ViT's positional embeddings are resampled to it)
    freeze_vision_layers: int = 0  # keep the first N ViT blocks (and the patch embedding) fixed
    freeze_token_embedding: bool = False  # keep the text tower's word vectors fixed (words never trained on
    # then keep their pretrained neighbours: the synthetic backbone's come from MiniLM)
    text_context: Literal["none", "minilm"] = "none"  # add a trained reading of frozen MiniLM states (word order)
    text_context_layers: int = 1  # transformer layers over the MiniLM states

    def __post_init__(self) -> None:
        sizes = ("embed_dim", "patch_size", "vision_width", "vision_layers", "vision_heads", "text_width",
                 "text_layers", "text_heads", "context_length")
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for width, heads in (("vision_width", "vision_heads"), ("text_width", "text_heads")):
            if getattr(self, width) % getattr(self, heads):
                raise ValueError(f"{width} {getattr(self, width)} is not divisible by {heads} {getattr(self, heads)}")
        if self.text_context not in ("none", "minilm"):
            raise ValueError(f"text_context must be 'none' or 'minilm', got {self.text_context!r}")
        if self.text_context != "none" and self.text_encoder != "clip":
            raise ValueError("text_context adds to the CLIP text tower; text_encoder 'minilm' already reads MiniLM")
        if self.text_context_layers < 1:
            raise ValueError(f"text_context_layers must be >= 1, got {self.text_context_layers}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not 0 <= self.freeze_vision_layers <= self.vision_layers:
            raise ValueError(f"freeze_vision_layers must be in [0, vision_layers={self.vision_layers}], "
                             f"got {self.freeze_vision_layers}")

    def with_vocabulary(self, captions: Sequence[str]) -> BackboneConfig:
        """This config with a word vocabulary built from `captions` (kept if one is already set)."""
        if self.tokenizer != "words" or self.text_encoder != "clip" or self.vocabulary:
            return self
        tok = WordTokenizer.build(captions)
        return replace(self, vocabulary=tuple(tok.tokens[len(SPECIAL_TOKENS) : -1]))

    def with_pretrained_shape(self) -> tuple[BackboneConfig, int | None]:
        """(config with the `pretrained` checkpoint's tower shapes, the image size to train at: `image_size`
        if set, else the checkpoint's).

        Without `pretrained`: (self, None). A pretrained text tower always uses its BPE tokenizer.
        """
        if not self.pretrained:
            return self, None
        clip, _, _ = _load_clip(self)
        shaped = _shape_of(self, clip)
        size = self.image_size or clip.vision_config.image_size
        if size % shaped.patch_size:
            raise TvrError(f"backbone.image_size {size} is not a multiple of {self.pretrained}'s patch size {shaped.patch_size}")
        return shaped, size


def adapt_to_backbone(config, train_captions: Sequence[str]):  # noqa: ANN001, ANN201 - any config with backbone + image_size
    """`config` with the pretrained checkpoint's tower shapes and image size, or (from scratch) a word
    vocabulary built from `train_captions`. For model configs holding `backbone` and `image_size`."""
    backbone, image_size = config.backbone.with_pretrained_shape()
    fields = {**config.__dict__, "backbone": backbone.with_vocabulary(train_captions)}
    size = image_size or config.backbone.image_size
    if size is not None:
        if size % backbone.patch_size:
            raise TvrError(f"backbone.image_size {size} is not a multiple of backbone.patch_size {backbone.patch_size}")
        fields["image_size"] = size
    return type(config)(**fields)


class ClipBackbone(nn.Module):
    """Frames → per-frame joint-space embeddings; captions → (EOT embedding, token states, mask)."""

    def __init__(self, config: BackboneConfig, image_size: int) -> None:
        super().__init__()
        if config.image_size is not None and config.image_size != image_size:
            raise ValueError(f"backbone.image_size is {config.image_size} but the model's image_size is {image_size}")
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
        mean, std, pretrained_tok = CLIP_MEAN, CLIP_STD, None
        if config.pretrained:
            clip, pretrained_tok, pre = _load_clip(config)
            _check_shape(config, image_size, clip)
            clip.resize_images(image_size)  # a no-op at the checkpoint's own size
            mean, std = pre.mean, pre.std
        else:
            clip = ClipModel(vision, text)
        self.visual = clip.visual
        self.text: nn.Module | None = clip.text if config.text_encoder == "clip" else None
        self.minilm: nn.Module | None = None
        self.text_proj: nn.Linear | None = None
        if config.text_encoder == "minilm":
            from tvr.encoders.minilm import load_minilm

            self.minilm, self._tokenizer = load_minilm(trainable=True)
            self.text_proj = nn.Linear(self.minilm.width, config.embed_dim)
        elif config.pretrained:
            if pretrained_tok is None:
                raise TvrError(
                    f"{config.pretrained}: no tokenizer beside the weights; set backbone.hf_tokenizer to a CLIP tokenizer folder"
                )
            self._tokenizer = pretrained_tok
        else:
            self._tokenizer = self._make_tokenizer()
        pixel_mean, pixel_std = pixel_scale(mean, std)
        self.register_buffer("pixel_mean", pixel_mean, persistent=False)
        self.register_buffer("pixel_std", pixel_std, persistent=False)
        self.text_context: nn.Module | None = None
        if config.text_context == "minilm":
            from tvr.models.text_context import MiniLMContext

            self.text_context = MiniLMContext(config.embed_dim, layers=config.text_context_layers)
        self._freeze(config.freeze_vision_layers)
        if config.freeze_token_embedding and self.text is not None:
            self.text.token_embedding.weight.requires_grad_(False)

    def _make_tokenizer(self):
        c = self.config
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

    def real_pixels(self, frames: Tensor, mask: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] uint8, mask [B, T] → the real frames only, as the ViT reads them
        [N, 3, H, W] ((pixels - mean) / std); frames of another size are refused."""
        if frames.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"frames are {tuple(frames.shape[-2:])}, model expects {self.image_size}px")
        return (frames[mask].float() - self.pixel_mean) / self.pixel_std

    def encode_frames(self, frames: Tensor, mask: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] uint8, mask [B, T] → projected CLS per frame [B, T, D], padding = 0.

        Only real frames go through the ViT: padding costs nothing and cannot leak into outputs.
        """
        b, t = mask.shape
        cls, _ = self.visual(self.real_pixels(frames, mask))
        out = cls.new_zeros(b, t, cls.shape[-1])
        out[mask] = cls
        return out

    def encode_text(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled [N, D], token states [N, W, D], mask [N, W])."""
        device = self.pixel_mean.device
        if self._tokenizer is None:
            raise TvrError("the word tokenizer has no vocabulary (this model was never trained)")
        ids, mask = self._tokenizer(list(texts), self.config.context_length)  # fixed width: batches concatenate
        ids, mask = ids.to(device), mask.to(device)
        if self.minilm is not None:
            assert self.text_proj is not None
            states, pooled = self.minilm(ids, mask)  # MiniLM: masked mean of the token states
            return self.text_proj(pooled), self.text_proj(states), mask
        assert self.text is not None
        # the tower is causal: trailing padding changes no real token, so run only up to the longest caption
        width = max(1, int(mask.sum(dim=1).max())) if len(mask) else 1
        states, eot, valid = self.text(ids[:, :width], mask[:, :width])
        if self.text_context is not None:
            eot = eot + self.text_context(texts)
        pad = ids.shape[1] - width
        return eot, F.pad(states, (0, 0, 0, pad)), torch.cat([valid, valid.new_zeros(len(valid), pad)], dim=1)


def _load_clip(config: BackboneConfig):
    """(ClipModel, tokenizer or None, PreprocessInfo) of `config.pretrained` via the shared loader."""
    from tvr.encoders.clip import load_clip

    if "synthetic-clip-" in Path(config.pretrained).name and not Path(config.pretrained).exists():
        raise TvrError(f"the synthetic backbone {config.pretrained} is gone (a cleared cache?); rebuild it with "
                       "`tvr pretrain` (the run's recipe is in its config.json under training.pretrain)")
    if config.pretrained_weights:
        return load_clip(config.pretrained, checkpoint=config.pretrained_weights, tokenizer=config.hf_tokenizer)
    return load_clip(config.pretrained, tokenizer=config.hf_tokenizer)


def _shape_of(config: BackboneConfig, clip: ClipModel) -> BackboneConfig:
    v, t = clip.vision_config, clip.text_config
    return replace(
        config, embed_dim=v.output_dim, patch_size=v.patch_size, vision_width=v.width, vision_layers=v.layers,
        vision_heads=v.heads, text_width=t.width, text_layers=t.layers, text_heads=t.heads, quick_gelu=v.quick_gelu,
        context_length=min(config.context_length, t.context_length),
        tokenizer="clip-bpe" if config.text_encoder == "clip" else config.tokenizer, vocabulary=(),
    )


def _check_shape(config: BackboneConfig, image_size: int, clip: ClipModel) -> None:
    """The config must describe the checkpoint (saved configs are read back without it)."""
    want = _shape_of(config, clip)
    for name in ("embed_dim", "patch_size", "vision_width", "vision_layers", "vision_heads", "text_width",
                 "text_layers", "text_heads", "quick_gelu", "context_length"):
        if getattr(config, name) != getattr(want, name):
            raise TvrError(f"backbone.{name} is {getattr(config, name)!r} but {config.pretrained} has {getattr(want, name)!r}")
    if image_size % want.patch_size:
        raise TvrError(f"image_size {image_size} is not a multiple of {config.pretrained}'s patch size {want.patch_size}")
