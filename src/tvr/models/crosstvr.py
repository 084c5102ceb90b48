"""CrossTVR re-ranker (DESIGN §3): cross attention between text tokens and frozen frame tokens.

Stage 2 of a two-stage search. It never sees pixels: it reads the frozen first-stage tokens
(per-frame CLS + patch tokens of the vision tower, token states of the text tower), keeps M tokens
per frame, and scores (text, video) pairs:

- spatial text attention: [N_Q learned queries ⊕ text tokens] → L × (self-attention, cross-attention
  to ONE frame's M tokens), all frames of all pairs as one batch; X_spatial(t) = mean of the first
  N_Q outputs;
- temporal text attention: the T spatial outputs (+ frame position) as queries → L × (self-attention,
  cross-attention to the concatenated selected tokens of every frame);
- a linear head on the masked mean over frames → one match logit per pair.
Spatial and temporal blocks share parameters when `share_blocks` (the paper's choice).

With `residual`, the re-ranker learns a correction to the first stage instead of a match score of
its own: training scores a pair with (first-stage cosine × `first_stage_scale`, the slope of the
frozen first stage's logistic calibration, fitted by the trainer) + the head's logit, and the
two-stage merge adds the head's logit to the same
scaled first-stage score (`merge_weight`). Training's objective is then the merged score that ranks
the candidates, and the head starts at zero, so an untrained re-ranker ranks as its first stage does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from tvr.data.batch import TextBatch, VideoBatch, VideoInputSpec
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.layers import QuickGELU, masked_mean
from tvr.models.registry import register

TEXT_TOKENS = "text_tokens"  # TextBatch.features: [N, W, D] frozen text-tower token states
TEXT_MASK = "text_mask"  # [N, W] bool
FRAME_TOKENS = "frame_tokens"  # VideoBatch.features: [B, T, 1+L, D] frozen CLS + patch tokens


@dataclass(frozen=True)
class CrossTvrConfig(ModelConfig):
    width: int = 128  # D of the frozen tokens (the first stage's joint space); set from the first stage
    tokens_per_frame: int = 4  # M [paper: 4], CLS included when keep_cls
    keep_cls: bool = True
    num_queries: int = 8  # N_Q learned query tokens
    layers: int = 2  # L per module
    heads: int = 4
    max_frames: int = 64  # frame-position table size
    modules: Literal["both", "spatial", "temporal"] = "both"  # ablation switch
    share_blocks: bool = True  # spatial and temporal modules use the same blocks [paper: shared]
    dropout: float = 0.0
    residual: bool = False  # learn a correction to the first stage's logit (module docstring)
    first_stage_scale: float = 1.0  # slope of the first stage's logistic calibration, fitted by the trainer when residual

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.tokens_per_frame < 1 or self.num_queries < 1 or self.layers < 1:
            raise ValueError("tokens_per_frame, num_queries and layers must be at least 1")
        if not (math.isfinite(self.first_stage_scale) and self.first_stage_scale > 0):
            raise ValueError(f"first_stage_scale must be a positive number, got {self.first_stage_scale}")


class CrossBlock(nn.Module):
    """Pre-norm self-attention over the queries, cross-attention to the key tokens, then an MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_q = nn.LayerNorm(width)
        self.ln_kv = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x: Tensor, x_pad: Tensor, kv: Tensor, kv_pad: Tensor) -> Tensor:
        """x [B, Q, D] queries (x_pad [B, Q] True = padding), kv [B, K, D] (kv_pad [B, K])."""
        h = self.ln_self(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=x_pad, need_weights=False)[0]
        k = self.ln_kv(kv)
        x = x + self.cross_attn(self.ln_q(x), k, k, key_padding_mask=kv_pad, need_weights=False)[0]
        return x + self.mlp(self.ln_mlp(x))


class TokenSelector(nn.Module):
    """Keeps M tokens per frame: the CLS token plus the M−1 patch tokens a learned scorer ranks
    highest (kept in spatial order). Hard top-k at all times; the kept tokens are multiplied by a
    straight-through gate (value 1, gradient of the score) so the scorer learns from the match loss."""

    def __init__(self, width: int, keep: int, keep_cls: bool) -> None:
        super().__init__()
        self.keep, self.keep_cls = keep, keep_cls
        self.norm = nn.LayerNorm(2 * width)
        self.score = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, T, 1+L, D] (index 0 = CLS) → [B, T, M, D]."""
        cls, patches = tokens[:, :, :1], tokens[:, :, 1:]
        n_patch = patches.shape[2]
        k = min(self.keep - int(self.keep_cls), n_patch)
        feats = torch.cat([patches, cls.expand_as(patches)], dim=-1)
        s = self.score(self.norm(feats)).squeeze(-1)  # [B, T, L]
        idx = s.topk(k, dim=-1).indices.sort(dim=-1).values  # spatial order
        gate = torch.sigmoid(s)
        gate = (1.0 + gate - gate.detach()).gather(-1, idx).unsqueeze(-1)  # == 1, carries d(score)
        kept = patches.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, patches.shape[-1])) * gate
        return torch.cat([cls, kept], dim=2) if self.keep_cls else kept


@register("crosstvr", CrossTvrConfig)
class CrossTvrReranker(RetrievalModel):
    """Scores (text, video) pairs with cross attention on frozen tokens; see the module docstring.

    `score_pairs` is the workhorse (text i with video i); `similarity` scores every pair of two sets
    (for small sets only: its cost is n_text × n_video pair forwards).
    """

    inner_product = False
    reranker: ClassVar[bool] = True  # trained by tvr.train.rerank_trainer on top of a first-stage run

    @property
    def sees_frame_order(self) -> bool:  # type: ignore[override]
        """The spatial module alone pools per-frame outputs with a mean: the order of frames is lost."""
        return self.config.modules != "spatial"

    def __init__(self, config: CrossTvrConfig) -> None:
        super().__init__(config)
        d = config.width
        self.selector = TokenSelector(d, config.tokens_per_frame, config.keep_cls)
        self.queries = nn.Parameter(torch.randn(config.num_queries, d) * d**-0.5)
        self.frame_position = nn.Embedding(config.max_frames, d)
        nn.init.normal_(self.frame_position.weight, std=0.01)
        self.spatial = nn.ModuleList(CrossBlock(d, config.heads, config.dropout) for _ in range(config.layers))
        if config.share_blocks:
            self.temporal = self.spatial
        else:
            self.temporal = nn.ModuleList(CrossBlock(d, config.heads, config.dropout) for _ in range(config.layers))
        self.ln_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)
        nn.init.constant_(self.head.bias, -math.log(2.0))  # training sees 1 positive per 2 negatives
        if config.residual:  # starts as a constant: the merged ranking is the first stage's
            nn.init.zeros_(self.head.weight)

    @property
    def merge_weight(self) -> float:
        """What the first stage's cosine is multiplied by before the re-ranker's logit is added."""
        return self.config.first_stage_scale if self.config.residual else 1.0

    # -- RetrievalModel interface: embeddings are the frozen tokens ---------------------------------
    def input_spec(self) -> VideoInputSpec:
        return VideoInputSpec(self.config.num_frames, self.config.image_size, streams=(FRAME_TOKENS,), pixels=False)

    def encode_text(self, batch: TextBatch) -> TextEmb:
        tokens, mask = batch.features[TEXT_TOKENS], batch.features[TEXT_MASK].bool()
        tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding never carries values
        return TextEmb(masked_mean(tokens, mask), tokens, mask)

    def encode_video(self, batch: VideoBatch) -> VideoEmb:
        tokens = batch.features[FRAME_TOKENS]  # [B, T, 1+L, D]
        mask = batch.frame_mask.bool()
        tokens = tokens.masked_fill(~mask[:, :, None, None], 0.0)
        selected = self.selector(tokens).masked_fill(~mask[:, :, None, None], 0.0)
        return VideoEmb(masked_mean(tokens[:, :, 0], mask), frame_mask=mask, timestamps=batch.timestamps, tokens=selected)

    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        n_t, n_v = len(text_emb), len(video_emb)
        ti = torch.arange(n_t).repeat_interleave(n_v)
        vi = torch.arange(n_v).repeat(n_t)
        return self.score_pairs(text_emb.select(ti), video_emb.select(vi)).view(n_t, n_v)

    def loss(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        raise NotImplementedError("crosstvr trains with tvr.train.rerank_trainer (matching BCE with hard negatives)")

    # -- the re-ranker ---------------------------------------------------------------------------
    def score_pairs(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """[P] match logits of text p with video p (both already encoded, P rows each)."""
        text, text_mask = text_emb.tokens, text_emb.token_mask
        video, frame_mask = video_emb.tokens, video_emb.frame_mask
        assert text is not None and text_mask is not None and video is not None and frame_mask is not None
        used = text_mask.any(0).nonzero()
        width = int(used[-1]) + 1 if len(used) else 1
        text, text_mask = text[:, :width], text_mask[:, :width]  # columns padded in every row cost only time
        p, t, m, d = video.shape
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"{t} frames exceed max_frames={self.frame_position.num_embeddings}")
        pos = self.frame_position(torch.arange(t, device=video.device))  # [T, D]
        keys = (video + pos[None, :, None, :]).reshape(p, t * m, d)
        keys_pad = (~frame_mask).repeat_interleave(m, dim=1)  # [P, T*M]
        mode = self.config.modules
        if mode == "temporal":
            out = self._run(self.temporal, self._query_tokens(text, text_mask), keys, keys_pad)
            pooled = out[:, : self.config.num_queries].mean(1)
        else:
            spatial = self._spatial(text, text_mask, video, frame_mask)  # [P, T, D]
            if mode == "both":
                q = spatial + pos.unsqueeze(0)
                spatial = self._run(self.temporal, (q, ~frame_mask), keys, keys_pad)
            pooled = masked_mean(spatial, frame_mask)
        return self.head(self.ln_out(pooled)).squeeze(-1)

    def _query_tokens(self, text: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """[N_Q learned queries ⊕ text tokens] and its padding mask."""
        n = text.shape[0]
        q = torch.cat([self.queries.unsqueeze(0).expand(n, -1, -1), text], dim=1)
        pad = torch.cat([text_mask.new_zeros(n, self.config.num_queries), ~text_mask], dim=1)
        return q, pad

    def _spatial(self, text: Tensor, text_mask: Tensor, video: Tensor, frame_mask: Tensor) -> Tensor:
        """X_spatial [P, T, D]: every real (pair, frame) is one row of a single batch; padded frames
        are never computed (zeros)."""
        p, t, m, d = video.shape
        pair_of = torch.arange(p, device=video.device).unsqueeze(1).expand(p, t)[frame_mask]  # [R]
        q, q_pad = self._query_tokens(text.index_select(0, pair_of), text_mask.index_select(0, pair_of))
        kv = video[frame_mask]  # [R, M, D]
        out = self._run(self.spatial, (q, q_pad), kv, kv.new_zeros(kv.shape[:2], dtype=torch.bool))
        x = video.new_zeros(p, t, d)
        x[frame_mask] = out[:, : self.config.num_queries].mean(1)
        return x

    @staticmethod
    def _run(blocks: nn.ModuleList, queries: tuple[Tensor, Tensor], kv: Tensor, kv_pad: Tensor) -> Tensor:
        x, x_pad = queries
        for block in blocks:
            x = block(x, x_pad, kv, kv_pad)
        return x


# -- frozen first-stage tokens: what the re-ranker reads ---------------------------------------------
@torch.no_grad()
def frozen_frame_tokens(first_stage: RetrievalModel, batch: VideoBatch) -> Tensor:
    """[B, T, 1+L, D] frame tokens of the frozen first stage (index 0 = CLS, padded frames = 0).

    A first stage whose VideoEmb carries `tokens` (with per-frame vectors as CLS) is used as is;
    otherwise its CLIP vision tower is run on the real frames only.
    """
    backbone = getattr(first_stage, "backbone", None)
    if backbone is None or not hasattr(backbone, "visual"):
        emb = first_stage.encode_video(batch)
        if emb.tokens is None or emb.frames is None:
            from tvr.errors import TvrError

            raise TvrError(f"first stage {first_stage.method!r} exposes no frame tokens to re-rank with")
        return torch.cat([emb.frames.unsqueeze(2), emb.tokens], dim=2)
    if batch.frames is None:
        raise ValueError("frozen_frame_tokens needs frames in the VideoBatch")
    mask = batch.frame_mask.bool()
    cls, patches = backbone.visual(backbone.real_pixels(batch.frames, mask))
    tokens = torch.cat([cls.unsqueeze(1), patches], dim=1)  # [R, 1+L, D]
    out = tokens.new_zeros(*mask.shape, *tokens.shape[1:])
    out[mask] = tokens
    return out


@torch.no_grad()
def frozen_text_tokens(first_stage: RetrievalModel, texts: list[str]) -> tuple[Tensor, Tensor]:
    """(token states [N, W, D], mask [N, W]) of the frozen first-stage text tower."""
    emb = first_stage.encode_text(TextBatch(list(texts)).to(_device_of(first_stage)))
    if emb.tokens is None or emb.token_mask is None:
        from tvr.errors import TvrError

        raise TvrError(f"first stage {first_stage.method!r} exposes no text tokens to re-rank with")
    return emb.tokens, emb.token_mask.bool()


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def text_emb_from_tokens(reranker: CrossTvrReranker, tokens: Tensor, mask: Tensor) -> TextEmb:
    return reranker.encode_text(TextBatch([""] * len(tokens), {TEXT_TOKENS: tokens, TEXT_MASK: mask}))


def video_emb_from_tokens(reranker: CrossTvrReranker, tokens: Tensor, mask: Tensor) -> VideoEmb:
    times = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return reranker.encode_video(VideoBatch(None, mask, times, {FRAME_TOKENS: tokens}))


