"""`random-tiny`: a deterministic, randomly initialised tiny CLIP-layout encoder.

Its embeddings are MEANINGLESS (no training): it exists so pipelines (extract → train → index →
search) run offline in tests and examples with the same tensor shapes as a real CLIP.
Same seed and config → bit-identical weights on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from tvr.devices import resolve_device
from tvr.encoders.base import TextEncoder, TextFeatures
from tvr.encoders.clip import FrozenTowerEncoder, PreprocessInfo, encode_captions
from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
from tvr.encoders.registry import TEXT_ENCODERS, VIDEO_ENCODERS
from tvr.encoders.tokenizer import HashingTokenizer


@dataclass(frozen=True)
class RandomTinyConfig:
    seed: int = 0
    num_frames: int = 12
    fps: float | None = None
    patch_tokens: bool = False
    image_size: int = 32
    patch_size: int = 8
    width: int = 64
    layers: int = 2
    heads: int = 4
    output_dim: int = 32
    batch_size: int = 256
    device: str = "cpu"


@dataclass(frozen=True)
class RandomTinyTextConfig:
    seed: int = 0
    context_length: int = 32
    vocab_size: int = 1024
    width: int = 64
    layers: int = 2
    heads: int = 4
    output_dim: int = 32
    batch_size: int = 256
    device: str = "cpu"


def build_random_tiny(
    seed: int = 0, vision: VisionConfig | None = None, text: TextConfig | None = None
) -> ClipModel:
    """The random-tiny ClipModel; the global RNG is left untouched."""
    vision = vision or VisionConfig(image_size=32, patch_size=8, width=64, layers=2, heads=4, output_dim=32)
    text = text or TextConfig(context_length=32, vocab_size=1024, width=64, layers=2, heads=4, output_dim=vision.output_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClipModel(vision, text).eval()


def _vision_config(c: RandomTinyConfig) -> VisionConfig:
    return VisionConfig(
        image_size=c.image_size, patch_size=c.patch_size, width=c.width, layers=c.layers, heads=c.heads, output_dim=c.output_dim
    )


def _text_config(c: RandomTinyTextConfig) -> TextConfig:
    return TextConfig(
        context_length=c.context_length, vocab_size=c.vocab_size, width=c.width, layers=c.layers, heads=c.heads, output_dim=c.output_dim
    )


@VIDEO_ENCODERS.register("random-tiny")
class RandomTinyVideoEncoder(FrozenTowerEncoder):
    """Deterministic random tiny CLIP-layout image tower (meaningless features, for tests/examples)."""

    name: ClassVar[str] = "random-tiny"
    config_cls: ClassVar[type] = RandomTinyConfig

    def __init__(self, config: RandomTinyConfig) -> None:
        vision = _vision_config(config)
        self.model = build_random_tiny(config.seed, vision)
        arch = f"{config.image_size}-{config.patch_size}-{config.width}-{config.layers}-{config.heads}-{config.output_dim}"
        super().__init__(config, self.model.visual, PreprocessInfo(vision.image_size), f"random-tiny-v1-s{config.seed}-{arch}")


@TEXT_ENCODERS.register("random-tiny")
class RandomTinyTextEncoder(TextEncoder):
    """Deterministic random tiny CLIP-layout text tower with a hashing tokenizer (meaningless)."""

    name: ClassVar[str] = "random-tiny"
    config_cls: ClassVar[type] = RandomTinyTextConfig
    outputs: ClassVar[tuple[str, ...]] = ("tokens [B,W,D]", "mask [B,W]", "pooled [B,D] (EOT)")

    def __init__(self, config: RandomTinyTextConfig) -> None:
        self.config = config
        self.model = build_random_tiny(config.seed, text=_text_config(config)).requires_grad_(False)
        self.device = resolve_device(config.device)
        self.model.to(self.device)
        self.tokenizer = HashingTokenizer(config.vocab_size)
        arch = f"{config.context_length}-{config.vocab_size}-{config.width}-{config.layers}-{config.heads}-{config.output_dim}"
        self._version = f"random-tiny-text-v1-s{config.seed}-{arch}"

    @property
    def version(self) -> str:
        return self._version

    def encode_text(self, texts: Sequence[str]) -> TextFeatures:
        return encode_captions(
            self.model,
            self.tokenizer,
            texts,
            context_length=self.config.context_length,
            batch_size=self.config.batch_size,
            device=self.device,
        )
