"""ProST (DESIGN §3): progressive spatio-temporal prototype matching.

Texts become phrase prototypes (non-negative ReLU-MLP weights over word tokens) plus a sentence
prototype (the EOT embedding). Videos become object prototypes per frame (the same construction over
patch tokens, plus the frame's CLS) and event prototypes (a frame decoder over a window of object
prototypes, then an event decoder with learned queries, blended 0.5/0.5 with the frame-CLS mean).
Scores: object–phrase (Σ over phrases of the max over frames and objects, / N_o) + event–sentence
(max over events). Each branch is one batched matrix product plus masked max reductions, so scoring
costs no Python loop over texts or videos; it is not an inner product, so the index holds candidate
vectors (event mean ↔ sentence) and re-scores candidates with `similarity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvr.data.batch import TextBatch, VideoBatch
from tvr.models.backbone import BackboneConfig, ClipBackbone, adapt_to_backbone
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.layers import masked_mean
from tvr.models.registry import register

WEIGHT_FLOOR = 1e-4  # added to every valid token's prototype weight (see PrototypeWeights)
SCORE_BLOCK_ELEMENTS = 1 << 24  # pairwise prototype products held at once while scoring (64 MiB fp32)


@dataclass(frozen=True)
class ProstConfig(ModelConfig):
    num_frames: int = 12  # paper: 12
    image_size: int = 64
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    phrase_prototypes: int = 28  # N_p [paper: 28]
    object_prototypes: int = 11  # N_o per frame, plus the CLS token [paper: 11]
    event_prototypes: int = 3  # N_e [paper: 3]
    frame_window: int = 1  # a frame query sees object prototypes of frames t-w … t+w
    frame_decoder_layers: int = 2
    event_decoder_layers: int = 2  # paper: 2
    decoder_heads: int = 0  # 0: embed_dim // 64, at least 1
    max_frames: int = 64  # size of the learned per-frame query table; must be >= num_frames
    event_blend: float = 0.5  # weight of the event decoder output vs the frame-CLS mean [paper: 0.5]


@dataclass
class ProstTextEmb(TextEmb):
    """pooled = L2-normalised sentence prototype (EOT); phrases = L2-normalised phrase prototypes."""

    phrases: Tensor | None = None  # [N, N_p, D]


@dataclass
class ProstVideoEmb(VideoEmb):
    """pooled = candidate vector for the index; objects/events = L2-normalised prototypes."""

    objects: Tensor | None = None  # [N, T, N_o + 1, D] (index N_o = the frame's CLS), padded frames 0
    events: Tensor | None = None  # [N, N_e, D]


class PrototypeWeights(nn.Module):
    """Tokens [.., L, D] → K prototypes [.., K, D]: non-negative weights (ReLU-MLP), a weighted mean.

    Padded tokens get weight 0 (and a NaN-proof zero value), so they cannot move a prototype. A small
    floor on valid tokens' weights turns a prototype whose ReLU is zero everywhere (common for short
    captions) into the token mean instead of a zero vector that would score 0 against everything.
    """

    def __init__(self, width: int, count: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, count))

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        tokens = torch.where(valid.unsqueeze(-1), tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
        weights = (F.relu(self.mlp(tokens)) + WEIGHT_FLOOR) * valid.unsqueeze(-1).to(tokens.dtype)  # [.., L, K] > 0
        total = weights.sum(-2, keepdim=True).clamp(min=WEIGHT_FLOOR)  # [.., 1, K]; no valid token: zero prototype
        return (weights / total).transpose(-1, -2) @ tokens  # [.., K, D]


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: optional self-attention among queries, cross-attention, MLP."""

    def __init__(self, width: int, heads: int, self_attention: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True) if self_attention else None
        self.ln_self = nn.LayerNorm(width) if self_attention else None
        self.ln_q = nn.LayerNorm(width)
        self.ln_kv = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, queries: Tensor, memory: Tensor, memory_pad: Tensor) -> Tensor:
        """queries [B, Q, D]; memory [B, M, D]; memory_pad [B, M] True = ignore (≥1 False per row)."""
        if self.self_attn is not None:
            h = self.ln_self(queries)
            queries = queries + self.self_attn(h, h, h, need_weights=False)[0]
        kv = self.ln_kv(memory)
        queries = queries + self.cross_attn(self.ln_q(queries), kv, kv, key_padding_mask=memory_pad, need_weights=False)[0]
        return queries + self.mlp(self.ln_mlp(queries))


@register("prost", ProstConfig)
class Prost(RetrievalModel):
    """Object–phrase and event–sentence prototype matching over a CLIP-layout backbone."""

    inner_product = False

    def __init__(self, config: ProstConfig) -> None:
        super().__init__(config)
        if config.max_frames < config.num_frames:
            raise ValueError(f"max_frames ({config.max_frames}) < num_frames ({config.num_frames})")
        if min(config.phrase_prototypes, config.object_prototypes, config.event_prototypes) < 1:
            raise ValueError("phrase_prototypes, object_prototypes and event_prototypes must be at least 1")
        if config.frame_window < 0:
            raise ValueError(f"frame_window must be >= 0, got {config.frame_window}")
        self.backbone = ClipBackbone(config.backbone, config.image_size)
        width = config.backbone.embed_dim
        heads = config.decoder_heads or max(1, width // 64)
        self.phrase_weights = PrototypeWeights(width, config.phrase_prototypes)
        self.object_weights = PrototypeWeights(width, config.object_prototypes)
        self.frame_queries = nn.Parameter(0.02 * torch.randn(config.max_frames, width))
        self.frame_decoder = nn.ModuleList(DecoderLayer(width, heads, False) for _ in range(config.frame_decoder_layers))
        self.event_queries = nn.Parameter(0.02 * torch.randn(config.event_prototypes, width))
        self.event_decoder = nn.ModuleList(DecoderLayer(width, heads, True) for _ in range(config.event_decoder_layers))
        self.event_out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))

    @classmethod
    def adapt_config(cls, config: ProstConfig, train_captions):  # type: ignore[override]
        return adapt_to_backbone(config, train_captions)

    # -- encoders ----------------------------------------------------------------------------------
    def encode_text(self, batch: TextBatch) -> ProstTextEmb:
        eot, states, valid = self.backbone.encode_text(batch.texts)
        phrases = self.phrase_weights(states, valid.bool())  # [N, N_p, D]
        # the token states ride along as CLIP4Clip's do: a CrossTVR re-ranker reads them from its first stage
        return ProstTextEmb(F.normalize(eot, dim=-1), states, valid.bool(), phrases=F.normalize(phrases, dim=-1))

    def frame_tokens(self, frames: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(CLS [B, T, D], patches [B, T, L, D]) in the joint space; only real frames go through the ViT."""
        b, t = mask.shape
        bb = self.backbone
        cls, patches = bb.visual(bb.real_pixels(frames, mask))
        cls_out = cls.new_zeros(b, t, cls.shape[-1])
        cls_out[mask] = cls
        patch_out = patches.new_zeros(b, t, *patches.shape[1:])
        patch_out[mask] = patches
        return cls_out, patch_out

    def encode_video(self, batch: VideoBatch) -> ProstVideoEmb:
        if batch.frames is None:
            raise ValueError(f"{self.method} needs frames in the VideoBatch")
        mask = batch.frame_mask.bool()
        if mask.shape[1] > self.config.max_frames:
            raise ValueError(f"{mask.shape[1]} frames exceed max_frames={self.config.max_frames}")
        cls, patches = self.frame_tokens(batch.frames, mask)
        patch_valid = mask.unsqueeze(-1).expand(patches.shape[:3])
        objects = torch.cat([self.object_weights(patches, patch_valid), cls.unsqueeze(2)], dim=2)  # [B, T, N_o+1, D]
        objects = torch.where(mask[..., None, None], objects, torch.zeros((), dtype=objects.dtype, device=objects.device))
        frame_feats = self._frame_decoder(objects, mask)  # [B, T, D]
        events = self._event_decoder(frame_feats, mask)  # [B, N_e, D]
        cls_n = F.normalize(cls, dim=-1)
        cls_mean = F.normalize(masked_mean(cls_n, mask), dim=-1)  # meanP of the frames
        a = self.config.event_blend
        events = F.normalize(a * F.normalize(events, dim=-1) + (1 - a) * cls_mean.unsqueeze(1), dim=-1)
        pooled = F.normalize(events.mean(1), dim=-1)
        return ProstVideoEmb(
            pooled, frames=cls_n, frame_mask=mask, timestamps=batch.timestamps,
            objects=F.normalize(objects, dim=-1), events=events,
        )

    def _frame_decoder(self, objects: Tensor, mask: Tensor) -> Tensor:
        """One learned query per frame position cross-attends the object prototypes of frames t±w."""
        b, t, o, d = objects.shape
        w = self.config.frame_window
        span = 2 * w + 1
        padded = F.pad(objects, (0, 0, 0, 0, w, w))  # [B, T+2w, O, D]
        valid = F.pad(mask, (w, w), value=False)  # [B, T+2w]
        memory = padded.unfold(1, span, 1).permute(0, 1, 4, 2, 3).reshape(b * t, span * o, d)
        memory_valid = valid.unfold(1, span, 1).unsqueeze(-1).expand(b, t, span, o).reshape(b * t, span * o)
        memory_pad = ~memory_valid
        memory_pad[~memory_valid.any(-1)] = False  # a padded frame with no real neighbour: dropped below
        q = self.frame_queries[:t].unsqueeze(0).expand(b, t, d).reshape(b * t, 1, d)
        for layer in self.frame_decoder:
            q = layer(q, memory, memory_pad)
        out = q.view(b, t, d)
        return torch.where(mask.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))

    def _event_decoder(self, frame_feats: Tensor, mask: Tensor) -> Tensor:
        b = frame_feats.shape[0]
        pad = ~mask
        pad = pad & mask.any(-1, keepdim=True)  # an all-padding video (never real) would give NaN
        q = self.event_queries.unsqueeze(0).expand(b, -1, -1)
        for layer in self.event_decoder:
            q = layer(q, frame_feats, pad)
        return self.event_out(q)

    # -- matching ----------------------------------------------------------------------------------
    def branch_scores(self, text_emb: ProstTextEmb, video_emb: ProstVideoEmb) -> tuple[Tensor, Tensor]:
        """(object–phrase [n_text, n_video], event–sentence [n_text, n_video]) on the cosine scale.

        Each is one matrix product over all (text, video) pairs per block; blocks only bound memory.
        """
        phrases, objects, events = text_emb.phrases, video_emb.objects, video_emb.events
        if phrases is None or objects is None or events is None:
            raise ValueError("prost similarity needs ProstTextEmb / ProstVideoEmb (phrases, objects, events)")
        n, p, d = phrases.shape
        v, t, o, _ = objects.shape
        mask = video_emb.frame_mask
        if mask is None:
            mask = torch.ones(v, t, dtype=torch.bool, device=objects.device)
        object_valid = mask.bool().unsqueeze(-1).expand(v, t, o).reshape(v, t * o)
        flat_objects = objects.reshape(v * t * o, d)
        flat_phrases = phrases.reshape(n * p, d)
        per_video = n * p * t * o
        v_block = max(1, SCORE_BLOCK_ELEMENTS // max(per_video, 1))
        parts = []
        for s in range(0, v, v_block):  # blocks of videos: memory only, each is one batched product
            e = min(v, s + v_block)
            sims = (flat_phrases @ flat_objects[s * t * o : e * t * o].t()).view(n, p, e - s, t * o)
            sims = sims.masked_fill(~object_valid[s:e].view(1, 1, e - s, t * o), float("-inf"))
            parts.append(sims.amax(-1).sum(1))  # max over frames and objects, summed over phrases
        object_phrase = torch.cat(parts, 1) / self.config.object_prototypes
        ne = events.shape[1]
        event_sentence = (text_emb.pooled @ events.reshape(v * ne, d).t()).view(n, v, ne).amax(-1)
        return object_phrase, event_sentence

    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        op, es = self.branch_scores(text_emb, video_emb)  # type: ignore[arg-type]
        return op + es

    def loss(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """Mean of the four InfoNCE terms: both branches, text→video and video→text."""
        from tvr.models.losses import symmetric_infonce

        op, es = self.branch_scores(text_emb, video_emb)  # type: ignore[arg-type]
        scale = self.scale()
        return 0.5 * (symmetric_infonce(op * scale) + symmetric_infonce(es * scale))

    def candidate_vectors(self, video_emb: VideoEmb) -> Tensor:
        """Mean event prototype (normalised): a first-stage proxy for the event–sentence branch."""
        return video_emb.pooled

    def candidate_query_vectors(self, text_emb: TextEmb) -> Tensor:
        return text_emb.pooled

    def frame_similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """[n_text, n_video, T]: the object–phrase score restricted to each frame (padded = -inf)."""
        phrases, objects = text_emb.phrases, video_emb.objects  # type: ignore[attr-defined]
        n, p, d = phrases.shape
        v, t, o, _ = objects.shape
        sims = (phrases.reshape(n * p, d) @ objects.reshape(v * t * o, d).t()).view(n, p, v, t, o)
        s = sims.amax(-1).sum(1) / self.config.object_prototypes  # [n, v, t]
        if video_emb.frame_mask is not None:
            s = s.masked_fill(~video_emb.frame_mask.bool().unsqueeze(0), float("-inf"))
        return s
