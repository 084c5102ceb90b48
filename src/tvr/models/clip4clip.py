"""CLIP4Clip baselines (DESIGN §3): meanP and seqTransf over per-frame CLIP embeddings.

meanP: L2-normalise each frame embedding, masked mean over frames, L2-normalise; cosine with the
text's EOT embedding. seqTransf: frame embedding + learned frame-position embedding → 4-layer
transformer with a padding mask → residual add of the input frames → meanP.
Both are inner-product models: the pooled vectors go straight into an ANN index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvr.data.batch import TextBatch, VideoBatch
from tvr.models.backbone import BackboneConfig, ClipBackbone, adapt_to_backbone
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.layers import TemporalTransformer, masked_mean
from tvr.models.registry import register


@dataclass(frozen=True)
class Clip4ClipConfig(ModelConfig):
    num_frames: int = 12  # paper: 12
    image_size: int = 64
    backbone: BackboneConfig = field(default_factory=BackboneConfig)


@dataclass(frozen=True)
class SeqTransfConfig(Clip4ClipConfig):
    temporal_layers: int = 4  # paper: 4
    temporal_heads: int = 0  # 0: embed_dim // 64 (CLIP's head width), at least 1
    max_positions: int = 128  # frame-position table size; must be >= num_frames
    # std of the frame-position embeddings at init. Frame embeddings are not normalised here (the
    # synthetic CLIP's have norm ≈ 19, 1.7 per dimension): at 0.01 the transformer barely sees which
    # frame is which, and a CPU budget of ~300 steps never teaches it (`cpu-small` uses 1.0).
    frame_position_std: float = 0.01


@register("clip4clip-meanp", Clip4ClipConfig)
class Clip4ClipMeanP(RetrievalModel):
    """Parameter-free temporal pooling: the mean of normalised frame embeddings."""

    inner_product = True
    sees_frame_order = False  # a mean is the same in any order

    def __init__(self, config: Clip4ClipConfig) -> None:
        super().__init__(config)
        self.backbone = ClipBackbone(config.backbone, config.image_size)

    @classmethod
    def adapt_config(cls, config: Clip4ClipConfig, train_captions):  # type: ignore[override]
        """Pretrained CLIP: take its tower shapes and image size; from scratch: build the vocabulary."""
        return adapt_to_backbone(config, train_captions)

    def encode_text(self, batch: TextBatch) -> TextEmb:
        pooled, tokens, mask = self.backbone.encode_text(batch.texts)
        return TextEmb(F.normalize(pooled, dim=-1), tokens, mask)

    def temporal(self, frames: Tensor, mask: Tensor) -> Tensor:
        """Per-frame embeddings after temporal modelling (identity for meanP). [B, T, D]."""
        return frames

    def encode_video(self, batch: VideoBatch) -> VideoEmb:
        if batch.frames is None:
            raise ValueError(f"{self.method} needs frames in the VideoBatch")
        mask = batch.frame_mask
        frames = self.backbone.encode_frames(batch.frames, mask)  # [B, T, D], padded rows zero
        frames = F.normalize(self.temporal(frames, mask), dim=-1)
        pooled = F.normalize(masked_mean(frames, mask), dim=-1)
        return VideoEmb(pooled, frames=frames, frame_mask=mask, timestamps=batch.timestamps)

    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        return text_emb.pooled @ video_emb.pooled.t()


@register("clip4clip-seqtransf", SeqTransfConfig)
class Clip4ClipSeqTransf(Clip4ClipMeanP):
    """meanP after a temporal transformer over the frame sequence (with a residual around it)."""

    sees_frame_order = True

    def __init__(self, config: SeqTransfConfig) -> None:
        super().__init__(config)
        if config.max_positions < config.num_frames:
            raise ValueError(f"max_positions ({config.max_positions}) < num_frames ({config.num_frames})")
        if config.frame_position_std < 0:
            raise ValueError(f"frame_position_std must be >= 0, got {config.frame_position_std}")
        width = config.backbone.embed_dim
        heads = config.temporal_heads or max(1, width // 64)
        self.frame_position = nn.Embedding(config.max_positions, width)
        nn.init.normal_(self.frame_position.weight, std=config.frame_position_std)
        self.transformer = TemporalTransformer(width, config.temporal_layers, heads)

    def temporal(self, frames: Tensor, mask: Tensor) -> Tensor:
        t = frames.shape[1]
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"{t} frames exceed max_positions={self.frame_position.num_embeddings}")
        pos = self.frame_position(torch.arange(t, device=frames.device)).unsqueeze(0)
        out = self.transformer(frames + pos, mask)
        return out + frames  # paper: residual add of the un-normalised frame embeddings
