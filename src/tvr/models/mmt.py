"""MMT, the multi-modal transformer (DESIGN §3): several expert streams encoded jointly, matched to a
caption with caption-dependent mixture weights.

Video: each expert (appearance, motion, audio, …) → Linear to d_model + L2 norm; per expert an [AGG]
token = max-pool of its features; input = feature + expert embedding + temporal embedding (second t
→ index floor(t)+2; 0 = AGG, 1 = unknown time); transformer encoder; φ_i = output at AGG i.
Text: fine-tunable MiniLM (mean-pooled) → one gated embedding unit per expert (ψ_i) and mixture
logits h(c)ᵀa_i. s(v, c) = Σ_i w_i ⟨φ_i, ψ_i⟩ with w = softmax over the experts the video has.

Search is exact through a plain inner product despite the video-dependent renormalisation: the
weights only depend on the caption and on the video's *presence pattern* P (a subset of experts),
so the query vector holds one block per pattern, [w_i^P ψ_i]_{i∈P}, and a video's gallery vector
puts [φ_i]_{i∈P(v)} into the block of its own pattern (zeros elsewhere). The dimension is
d_model · N · 2^(N−1) (N = 3 experts: 12 · d_model).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvr.data.batch import TextBatch, VideoBatch, VideoInputSpec
from tvr.encoders.objects import SYNTHETIC_OBJECTS
from tvr.errors import TvrError
from tvr.models.backbone import BackboneConfig, ClipBackbone, adapt_to_backbone
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.experts import (
    AGG_INDEX,
    ExpertInput,
    compact,
    masked_max,
    shuffle_in_time,
    stream_input,
    temporal_index,
)
from tvr.models.layers import MaskedStandardize, ResidualAttentionBlock
from tvr.models.registry import register

APPEARANCE = "appearance"
MAX_INDEX_EXPERTS = 6  # the exact index vector grows as N · 2^(N−1)


@dataclass(frozen=True)
class MmtConfig(ModelConfig):
    num_frames: int = 12
    image_size: int = 64
    experts: tuple[str, ...] = (APPEARANCE, "motion", "audio")  # "appearance" or feature-store stream names
    appearance: str = "backbone"  # "backbone": trainable ViT on pixels; else a stream with "frame_cls"
    # the "objects" expert's network (`tvr pretrain --objects`): a folder, or the default one by name
    objects: str = SYNTHETIC_OBJECTS
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    d_model: int = 512  # paper: 512
    layers: int = 4  # paper: 4
    heads: int = 4  # paper: 4
    ffn: int = 3072  # paper: 3072
    dropout: float = 0.1  # paper: 0.1
    expert_dims: tuple[int, ...] = ()  # input width per expert; () or 0: known from the stream's encoder
    max_features: int = 30  # features per expert [paper: ≤ 30]; longer streams are subsampled
    # standardise each stream expert's features per dimension (BatchNorm without affine, over the valid
    # ones) before its Linear. Raw log-mel statistics share one large offset (mean cosine 0.92 between
    # videos) and the motion statistics are ~100× smaller than the Linear's bias at init
    stream_norm: bool = False
    max_seconds: int = 64  # temporal table rows: AGG, unknown, seconds 0 … max_seconds−1 (later clamp)
    text_trainable_layers: int = -1  # -1: fine-tune all of MiniLM; N ≥ 0: only its top N layers (CPU)
    text_lr_scale: float = 0.05  # MiniLM lr = train.lr × this (pretrained weights)
    # fresh self-attention layers over MiniLM's token states before pooling, at the full lr. Each starts
    # as the identity (zero output projections), so training begins from MiniLM's own sentence vector;
    # they give a slowly fine-tuned MiniLM room to learn which word goes with which ("a red cross
    # beside a blue ball" against "a blue cross beside a red ball"), which its mean pool hardly tells.
    # Measured worse on the benchmark world (2 layers: R@1 21.4 against 37.1; docs/methods/mmt.md)
    text_head_layers: int = 0
    context_length: int = 32  # caption tokens incl. [CLS]/[SEP]
    loss: Literal["margin", "infonce"] = "margin"
    margin: float = 0.05  # paper: 0.05
    shuffle_time: bool = False  # ablation: permute each expert's features in time (keeps timestamps)
    shuffle_seed: int = 0  # eval-time shuffles use a generator with this seed (deterministic scores)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.experts or len(set(self.experts)) != len(self.experts):
            raise ValueError(f"experts must be distinct and non-empty, got {list(self.experts)}")
        if len(self.experts) > MAX_INDEX_EXPERTS:
            raise ValueError(f"at most {MAX_INDEX_EXPERTS} experts (the exact index grows as N·2^(N-1))")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        if self.max_features < 1 or self.max_seconds < 1:
            raise ValueError("max_features and max_seconds must be at least 1")
        if self.text_head_layers < 0:
            raise ValueError(f"text_head_layers must be ≥ 0, got {self.text_head_layers}")

    @property
    def reads_backbone(self) -> bool:
        """Whether the model builds its CLIP backbone: only the appearance expert on pixels reads it."""
        return APPEARANCE in self.experts and self.appearance == "backbone"


@dataclass
class MmtTextEmb(TextEmb):
    """pooled = the ψ_i concatenated; experts [N, E, d] = ψ_i; weight_logits [N, E] = h(c)ᵀa_i."""

    experts: Tensor | None = None
    weight_logits: Tensor | None = None


@dataclass
class MmtVideoEmb(VideoEmb):
    """pooled = the φ_i concatenated (zeros for missing experts); experts [N, E, d]; present [N, E]."""

    experts: Tensor | None = None
    present: Tensor | None = None


class GatedEmbeddingUnit(nn.Module):
    """Linear → context gating x·σ(BN(Wx+b)) → L2 norm (Miech et al.'s mixture-of-embedding-experts unit)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(d_out, d_out)
        self.bn = nn.BatchNorm1d(d_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc(x)
        return F.normalize(x * torch.sigmoid(self.bn(self.gate(x))), dim=-1)


def mixture_weights(weight_logits: Tensor, present: Tensor) -> Tensor:
    """[Nt, Nv, E] softmax of the caption's logits over the experts each video has (zeros if none)."""
    logits = weight_logits.unsqueeze(1).masked_fill(~present.unsqueeze(0), float("-inf"))
    w = torch.softmax(logits, dim=-1)
    return torch.where(present.any(-1).view(1, -1, 1), w, torch.zeros_like(w))


def max_margin_ranking(scores_tv: Tensor, margin: float) -> Tensor:
    """Bidirectional max-margin ranking loss on a [B, B] score matrix (pair i = row i, column i):
    mean over the 2·B·(B−1) off-diagonal terms of relu(m + s_ij − s_ii) and relu(m + s_ji − s_ii)."""
    b = scores_tv.shape[0]
    if scores_tv.ndim != 2 or scores_tv.shape[1] != b or b < 2:
        raise ValueError(f"max_margin_ranking needs a square matrix of at least 2×2, got {tuple(scores_tv.shape)}")
    diag = scores_tv.diagonal()
    off = ~torch.eye(b, dtype=torch.bool, device=scores_tv.device)
    t2v = F.relu(margin + scores_tv - diag.unsqueeze(1))  # text i against other videos j
    v2t = F.relu(margin + scores_tv - diag.unsqueeze(0))  # video j against other texts i
    return (t2v[off].sum() + v2t[off].sum()) / (2 * b * (b - 1))


@register("mmt", MmtConfig)
class Mmt(RetrievalModel):
    """Multi-modal transformer over expert streams + MiniLM text with per-expert gated units."""

    inner_product = True  # exact, via per-presence-pattern blocks (module docstring)

    def __init__(self, config: MmtConfig) -> None:
        super().__init__(config)
        from tvr.encoders.minilm import load_minilm

        c = config
        n = len(c.experts)
        self.backbone: ClipBackbone | None = None
        if APPEARANCE in c.experts and c.appearance == "backbone":
            self.backbone = ClipBackbone(c.backbone, c.image_size)
            self.backbone.text = None  # MMT's text side is MiniLM; the CLIP text tower is never used
        if c.expert_dims and len(c.expert_dims) != n:
            raise ValueError(f"expert_dims has {len(c.expert_dims)} entries for {n} experts")
        self.expert_proj = nn.ModuleDict(
            {name: nn.Linear(self._input_dim(i, name), c.d_model) for i, name in enumerate(c.experts)}
        )
        self.stream_norms = nn.ModuleDict(
            {name: MaskedStandardize(self._input_dim(i, name)) for i, name in enumerate(c.experts)
             if c.stream_norm and not (name == APPEARANCE and c.appearance == "backbone")}
        )
        self.expert_embedding = nn.Embedding(n, c.d_model)
        self.temporal_embedding = nn.Embedding(c.max_seconds + 2, c.d_model)
        nn.init.normal_(self.expert_embedding.weight, std=0.02)
        nn.init.normal_(self.temporal_embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(c.d_model, c.heads, mlp_ratio=c.ffn / c.d_model, dropout=c.dropout) for _ in range(c.layers)
        )
        self.ln_post = nn.LayerNorm(c.d_model)
        self.text_encoder, self._tokenizer = load_minilm(trainable=True)
        self._freeze_text(c.text_trainable_layers)
        self._text_cache: dict[str, Tensor] = {}  # caption → frozen-prefix MiniLM states [W, width]
        width = self.text_encoder.width
        self.text_head = nn.ModuleList(ResidualAttentionBlock(width, c.heads, dropout=c.dropout) for _ in range(c.text_head_layers))
        for block in self.text_head:  # each layer starts as the identity
            nn.init.zeros_(block.attn.out_proj.weight)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.zeros_(block.mlp.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.bias)
        self.text_units = nn.ModuleList(GatedEmbeddingUnit(width, c.d_model) for _ in range(n))
        self.mixture = nn.Linear(width, n)  # row i = a_i: w_i(c) = softmax_i(h(c)ᵀ a_i)
        self._patterns = [p for r in range(1, n + 1) for p in itertools.combinations(range(n), r)]

    @classmethod
    def adapt_config(cls, config: MmtConfig, train_captions):  # type: ignore[override]
        """A pretrained appearance backbone dictates its tower shapes and the image size."""
        if APPEARANCE in config.experts and config.appearance == "backbone":
            return adapt_to_backbone(config, train_captions)
        return config

    # -- construction helpers ---------------------------------------------------------------------
    def _input_dim(self, i: int, name: str) -> int:
        c: MmtConfig = self.config  # type: ignore[assignment]
        if c.expert_dims and c.expert_dims[i] > 0:
            return c.expert_dims[i]
        if name == APPEARANCE and c.appearance == "backbone":
            return c.backbone.embed_dim
        return default_stream_dim(self._stream_of(name))

    def _stream_of(self, name: str) -> str:
        c: MmtConfig = self.config  # type: ignore[assignment]
        if name == APPEARANCE:
            return c.appearance
        return f"objects:weights={c.objects}" if name == "objects" else name

    def _freeze_text(self, trainable_layers: int) -> None:
        """Keep the embeddings and all but the top `trainable_layers` MiniLM layers fixed (CPU option)."""
        if trainable_layers < 0:
            return
        bert = self.text_encoder.bert
        layers = list(bert.encoder.layer)
        frozen = [bert.embeddings] + layers[: max(0, len(layers) - trainable_layers)]
        for module in frozen:
            module.requires_grad_(False)

    def param_lr_scale(self, name: str) -> float | None:
        """The trainer's per-parameter lr multiplier: MiniLM is pretrained, so it moves slowly."""
        return self.config.text_lr_scale if name.startswith("text_encoder.") else None  # type: ignore[attr-defined]

    def input_spec(self) -> VideoInputSpec:
        c: MmtConfig = self.config  # type: ignore[assignment]
        streams = tuple(self._stream_of(n) for n in c.experts if not (n == APPEARANCE and c.appearance == "backbone"))
        return VideoInputSpec(c.num_frames, c.image_size, streams=streams, pixels=self.backbone is not None, fps=c.sample_fps)

    # -- text -------------------------------------------------------------------------------------
    def encode_text(self, batch: TextBatch) -> MmtTextEmb:
        device = self.mixture.weight.device
        pooled = self.text_pooled(list(batch.texts), device)
        psi = torch.stack([unit(pooled) for unit in self.text_units], dim=1)  # [N, E, d]
        return MmtTextEmb(psi.flatten(1), experts=psi, weight_logits=self.mixture(pooled))

    def text_pooled(self, texts: list[str], device: torch.device) -> Tensor:
        """The masked mean [N, width] of MiniLM's token states, after the `text_head` layers."""
        c: MmtConfig = self.config  # type: ignore[assignment]
        ids, mask = self._tokenizer(texts, c.context_length)
        width = max(1, int(mask.sum(dim=1).max())) if texts else 1  # drop all-padding columns
        ids, mask = ids[:, :width].to(device), mask[:, :width].to(device)
        states = self.text_encoder(ids, mask)[0] if c.text_trainable_layers < 0 else self._text_states(texts, ids, mask)
        for block in self.text_head:
            states = block(states, ~mask.bool())
        weights = mask.to(states.dtype).unsqueeze(-1)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def _text_states(self, texts: list[str], ids: Tensor, mask: Tensor) -> Tensor:
        """MiniLM's last token states [N, W, width] with frozen bottom layers (text_trainable_layers ≥ 0):
        their outputs are computed once per caption (in eval mode, no dropout) and cached, so on CPU
        only the trainable top layers cost time per step."""
        c: MmtConfig = self.config  # type: ignore[assignment]
        device, width = ids.device, ids.shape[1]
        bert = self.text_encoder.bert
        layers = list(bert.encoder.layer)
        split = max(0, len(layers) - c.text_trainable_layers)
        todo = [i for i, t in enumerate(texts) if t not in self._text_cache]
        if todo:
            with torch.no_grad():
                h = bert.embeddings.eval()(input_ids=ids[todo])
                for layer in layers[:split]:
                    h = _run_layer(layer.eval(), h, mask[todo])
            for j, i in enumerate(todo):
                self._text_cache[texts[i]] = h[j, : int(mask[i].sum())].detach()
        states = torch.zeros(len(texts), width, self.text_encoder.width, device=device)
        for i, t in enumerate(texts):
            cached = self._text_cache[t]
            states[i, : len(cached)] = cached.to(device)
        for layer in layers[split:]:
            states = _run_layer(layer, states, mask)
        return states

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._text_cache.clear()  # cached MiniLM states belong to the weights they came from
        super()._load_from_state_dict(*args, **kwargs)

    # -- video ------------------------------------------------------------------------------------
    def expert_inputs(self, batch: VideoBatch) -> list[ExpertInput]:
        """Every configured expert of the batch, compacted to ≤ max_features (and shuffled if asked)."""
        c: MmtConfig = self.config  # type: ignore[assignment]
        out = []
        generator = None
        if c.shuffle_time and not self.training:
            generator = torch.Generator().manual_seed(c.shuffle_seed)
        for name in c.experts:
            if name == APPEARANCE and self.backbone is not None:
                if batch.frames is None:
                    raise ValueError("MMT's backbone appearance expert needs frames in the VideoBatch")
                feats = self.backbone.encode_frames(batch.frames, batch.frame_mask)
                x = ExpertInput(feats, batch.frame_mask.bool(), batch.timestamps.float())
            else:
                x = stream_input(batch, self._stream_of(name))
            if x.feats.shape[-1] != self.expert_proj[name].in_features:
                raise TvrError(f"MMT expert {name!r}: features are {x.feats.shape[-1]} wide, the model expects "
                               f"{self.expert_proj[name].in_features} (set model.expert_dims)")
            x = compact(x, c.max_features)
            if c.shuffle_time:
                x = shuffle_in_time(x, generator)
            out.append(x)
        return out

    def encode_video(self, batch: VideoBatch) -> MmtVideoEmb:
        return self.encode_experts(self.expert_inputs(batch))

    def encode_experts(self, experts: list[ExpertInput]) -> MmtVideoEmb:
        """The transformer over [AGG_1 … AGG_N, features of expert 1, …, features of expert N]."""
        c: MmtConfig = self.config  # type: ignore[assignment]
        seq, seq_valid, present = self.input_sequence(experts)
        pad = ~seq_valid
        for block in self.blocks:
            seq = block(seq, pad)
        seq = self.ln_post(seq)
        n = len(c.experts)
        phi = F.normalize(seq[:, :n], dim=-1) * present.unsqueeze(-1).to(seq.dtype)  # [B, E, d]
        first = experts[0]
        k0 = first.mask.shape[1]
        mask0 = first.mask.to(seq.device)
        frames = F.normalize(seq[:, n : n + k0], dim=-1).masked_fill(~mask0.unsqueeze(-1), 0.0)
        frames, frame_mask, times = _pad_time(frames, mask0, first.times.to(seq.device), c.max_features)
        return MmtVideoEmb(phi.flatten(1), frames=frames, frame_mask=frame_mask, timestamps=times,
                           experts=phi, present=present)

    def input_sequence(self, experts: list[ExpertInput]) -> tuple[Tensor, Tensor, Tensor]:
        """(sequence [B, E + ΣK, d], valid [B, E + ΣK], present [B, E]): AGG tokens first.

        Feature = L2norm(Linear(x)) + expert embedding + temporal embedding (x standardised first
        for a stream expert when model.stream_norm is on); AGG_i = max-pool of
        expert i's features + its expert embedding + temporal embedding 0. Missing experts and
        padding are zero and masked as keys.
        """
        c: MmtConfig = self.config  # type: ignore[assignment]
        device = self.expert_embedding.weight.device
        aggs, tokens, valid = [], [], []
        for i, (name, x) in enumerate(zip(c.experts, experts, strict=True)):
            mask = x.mask.to(device)
            feats = x.feats.to(device)
            if name in self.stream_norms:
                feats = self.stream_norms[name](feats, mask)
            feats = F.normalize(self.expert_proj[name](feats), dim=-1)
            feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)  # garbage in padding never propagates
            expert = self.expert_embedding.weight[i]
            when = self.temporal_embedding(temporal_index(x.times.to(device), c.max_seconds))
            aggs.append(masked_max(feats, mask) + expert + self.temporal_embedding.weight[AGG_INDEX])
            tokens.append(feats + expert + when)
            valid.append(mask)
        present = torch.stack([m.any(dim=1) for m in valid], dim=1)  # [B, E]
        agg_valid = present.clone()
        agg_valid[:, 0] |= ~present.any(dim=1)  # a video with no expert still needs one key (output unused)
        seq = torch.cat([torch.stack(aggs, dim=1)] + tokens, dim=1)
        seq_valid = torch.cat([agg_valid] + valid, dim=1)
        return seq.masked_fill(~seq_valid.unsqueeze(-1), 0.0), seq_valid, present

    # -- scoring ----------------------------------------------------------------------------------
    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        t, v = _as_text(text_emb), _as_video(video_emb)
        w = mixture_weights(t.weight_logits, v.present)  # [Nt, Nv, E]
        dots = torch.einsum("ted,ved->tve", t.experts, v.experts)
        return (w * dots).sum(-1)

    def learns_logit_scale(self) -> bool:
        return self.config.loss == "infonce"  # type: ignore[attr-defined] - the margin loss never reads it

    def loss(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        c: MmtConfig = self.config  # type: ignore[assignment]
        scores = self.similarity(text_emb, video_emb)
        if c.loss == "infonce":
            from tvr.models.losses import symmetric_infonce

            return symmetric_infonce(scores * self.scale())
        return max_margin_ranking(scores, c.margin)

    def query_vectors(self, text_emb: TextEmb) -> Tensor:
        """One block per presence pattern P: [w_i^P ψ_i for i in P] (w^P = softmax over P)."""
        t = _as_text(text_emb)
        blocks = []
        for pattern in self._patterns:
            idx = list(pattern)
            w = torch.softmax(t.weight_logits[:, idx], dim=-1)  # [N, |P|]
            blocks.append((w.unsqueeze(-1) * t.experts[:, idx]).flatten(1))
        return torch.cat(blocks, dim=1)

    def gallery_vectors(self, video_emb: VideoEmb) -> Tensor:
        """[φ_i for i in P(v)] in the block of the video's own pattern P(v); zeros elsewhere."""
        v = _as_video(video_emb)
        blocks = []
        for pattern in self._patterns:
            idx = list(pattern)
            mine = torch.zeros_like(v.present)
            mine[:, idx] = True
            is_mine = (v.present == mine).all(dim=1, keepdim=True)  # [N, 1]
            blocks.append(v.experts[:, idx].flatten(1) * is_mine.to(v.experts.dtype))
        return torch.cat(blocks, dim=1)

    def frame_similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """Cosine of ψ_1 (the first expert's text vector) with the first expert's contextualised
        per-time outputs: a heuristic for the best moment (those outputs are not trained to match)."""
        t, v = _as_text(text_emb), _as_video(video_emb)
        s = torch.einsum("nd,vtd->nvt", t.experts[:, 0], v.frames)
        return s.masked_fill(~v.frame_mask.unsqueeze(0), float("-inf"))


def default_stream_dim(stream: str) -> int:
    """Feature width of a stock stream encoder with its options (motion: dim; CLIP-layout: output_dim; audio: 2·n_mels)."""
    from tvr.data.streams import parse_stream
    from tvr.encoders.registry import create_video_encoder

    name, options = parse_stream(stream)
    encoder = create_video_encoder(name, **options)
    if hasattr(encoder, "feature_dim"):  # known once its weights are read (objects)
        return int(encoder.feature_dim)
    config = getattr(encoder, "config", None)
    if hasattr(config, "dim"):
        return int(config.dim)
    if hasattr(config, "output_dim"):  # CLIP-layout frame encoders ("frame_cls")
        return int(config.output_dim)
    if name == "audio" and hasattr(config, "n_mels"):
        return 2 * int(config.n_mels)
    raise TvrError(f"MMT: the feature width of stream {stream!r} is not known; set model.expert_dims")


def _run_layer(layer: nn.Module, states: Tensor, mask: Tensor) -> Tensor:
    """One BERT layer with an additive key-padding mask [B, 1, 1, W]."""
    additive = (~mask).to(states.dtype)[:, None, None, :] * torch.finfo(states.dtype).min
    out = layer(states, attention_mask=additive)
    return out[0] if isinstance(out, tuple) else out


def _pad_time(frames: Tensor, mask: Tensor, times: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pad/crop the time axis to exactly k, so embeddings of different batches concatenate."""
    cur = frames.shape[1]
    if cur >= k:
        return frames[:, :k], mask[:, :k], times[:, :k]
    extra = k - cur
    return (
        F.pad(frames, (0, 0, 0, extra)),
        F.pad(mask, (0, extra), value=False),
        F.pad(torch.nan_to_num(times, nan=0.0), (0, extra)),
    )


def _as_text(emb: TextEmb) -> MmtTextEmb:
    if not isinstance(emb, MmtTextEmb) or emb.experts is None or emb.weight_logits is None:
        raise TypeError(f"MMT needs an MmtTextEmb, got {type(emb).__name__}")
    return emb


def _as_video(emb: VideoEmb) -> MmtVideoEmb:
    if not isinstance(emb, MmtVideoEmb) or emb.experts is None or emb.present is None:
        raise TypeError(f"MMT needs an MmtVideoEmb, got {type(emb).__name__}")
    return emb
