"""TS2-Net (DESIGN §3): token shift + token selection + temporal transformer + frame-weighted score.

- Token shift: in the chosen ViT blocks (default: the last two) the attention input of frame t takes
  every 7th patch token from index 1 from frame t−1 and every 7th from index 4 from frame t+1 (index
  0 = CLS never moves); the residual keeps the unshifted tokens. A frame whose neighbour is missing
  (first/last frame, or a padded slot) keeps its own token, so padding never leaks into real frames.
- Token selection: a scorer on the projected tokens picks the top-k patches per frame (+ CLS);
  perturbed top-k while training, hard top-k (or seeded perturbed) at inference.
- The selected tokens of all frames go through a temporal transformer (frame-position embeddings as
  seqTransf); each frame's CLS output (+ its input CLS, residual) is that frame's embedding.
- Score: sᶠ = cos(text, frame f); w = softmax over real frames of 4·sᶠ/‖s‖₂; score = Σ_f w_f sᶠ.
  Not an inner product: the index holds mean-pooled frame vectors and search re-scores candidates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvr.data.batch import VideoBatch
from tvr.errors import TvrError
from tvr.models.base import TextEmb, VideoEmb
from tvr.models.clip4clip import Clip4ClipSeqTransf, SeqTransfConfig
from tvr.models.layers import masked_mean
from tvr.models.registry import register
from tvr.models.topk import hard_top_k_indices, perturbed_top_k

FRAME_WEIGHT_TEMPERATURE = 4.0  # paper: softmax(4 · s / ‖s‖)
SHIFT_DIVISOR = 7  # official code: stride = tokens per frame (incl. CLS) // 7, i.e. 7 for ViT-B/32's 50


@dataclass(frozen=True)
class Ts2NetConfig(SeqTransfConfig):
    shift_blocks: tuple[int, ...] = (-2, -1)  # ViT blocks with token shift; negative = from the end [last two]
    shift_stride: int | None = None  # every k-th token moves; None: (1 + patches) // 7, as the official code
    shift_from_previous: int = 1  # tokens 1, 8, 15, … come from frame t−1
    shift_from_next: int = 4  # tokens 4, 11, 18, … come from frame t+1
    top_k: int = 3  # patch tokens kept per frame, plus CLS [paper: 3]
    perturb_sigma: float = 0.05  # paper: 0.05
    perturb_samples: int = 500  # noise samples of the perturbed top-k [paper: 500]
    selection: Literal["hard", "perturbed"] = "hard"  # inference; training always uses perturbed
    selection_seed: int = 0  # noise seed of selection="perturbed" at inference


def default_shift_stride(num_tokens: int) -> int:
    """The official TS2-Net stride for frames of `num_tokens` tokens (CLS included): 50 → 7, 17 → 2, 197 → 28."""
    stride = num_tokens // SHIFT_DIVISOR
    if stride < 1:
        raise TvrError(f"ts2net token shift needs at least {SHIFT_DIVISOR} tokens per frame, got {num_tokens}; "
                       "set shift_stride or use smaller patches")
    return stride


def shift_positions(num_tokens: int, stride: int, start: int) -> Tensor:
    """Token indices start, start+stride, … below num_tokens (index 0 = CLS is never included)."""
    if start < 1 or stride < 1:
        raise TvrError(f"ts2net token shift needs start >= 1 and stride >= 1, got start={start}, stride={stride}")
    return torch.arange(start, num_tokens, stride)


def neighbour_rows(frame_mask: Tensor) -> tuple[Tensor, Tensor]:
    """For the real frames of `frame_mask` [B, T] in row-major order: the row of frame t−1 and of
    frame t+1 of the same video, or the frame's own row when that neighbour is absent or padded."""
    b, t = frame_mask.shape
    rows = torch.full((b, t), -1, dtype=torch.long, device=frame_mask.device)
    rows[frame_mask] = torch.arange(int(frame_mask.sum()), device=frame_mask.device)
    pad = rows.new_full((b, 1), -1)
    prev = torch.cat([pad, rows[:, :-1]], 1)
    nxt = torch.cat([rows[:, 1:], pad], 1)
    prev = torch.where(prev >= 0, prev, rows)
    nxt = torch.where(nxt >= 0, nxt, rows)
    return prev[frame_mask], nxt[frame_mask]


def shift_tokens(x: Tensor, prev: Tensor, nxt: Tensor, from_prev: Tensor, from_next: Tensor) -> Tensor:
    """x [N, 1+L, W] (N real frames) → a copy whose `from_prev` tokens come from row prev[n] and
    whose `from_next` tokens come from row nxt[n]; everything else unchanged."""
    out = x.clone()
    out[:, from_prev] = x[prev][:, from_prev]
    # a row without a t+1 keeps what it has so far (its t−1 token where the two sets overlap), as the official code
    has_next = (nxt != torch.arange(len(x), device=x.device))[:, None, None]
    out[:, from_next] = torch.where(has_next, x[nxt][:, from_next], out[:, from_next])
    return out


@contextmanager
def attn_input_hooks(blocks: Sequence[nn.Module], hook) -> Iterator[None]:
    """Install `hook` as the attention-input hook of `blocks` for one forward pass, then restore."""
    old = [b.attn_input_hook for b in blocks]
    try:
        for b in blocks:
            b.attn_input_hook = hook
        yield
    finally:
        for b, h in zip(blocks, old, strict=True):
            b.attn_input_hook = h


class TokenScorer(nn.Module):
    """Importance of each patch token given its frame: LayerNorm → Linear → GELU, then half of each
    patch's features concatenated with half of the frame CLS's features → MLP → one score."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
        self.local_width = width // 2
        self.out = nn.Sequential(
            nn.Linear(width, width // 2), nn.GELU(), nn.Linear(width // 2, max(1, width // 4)), nn.GELU(),
            nn.Linear(max(1, width // 4), 1),
        )

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [N, 1+L, D] (index 0 = CLS) → scores [N, L]."""
        h = self.inp(tokens)
        local = h[:, 1:, : self.local_width]
        glob = h[:, :1, self.local_width :].expand(-1, local.shape[1], -1)
        return self.out(torch.cat([local, glob], -1)).squeeze(-1)


def frame_weighted_score(frame_cos: Tensor, frame_mask: Tensor) -> Tensor:
    """frame_cos [Q, V, T] (cosines), frame_mask [V, T] → [Q, V] = Σ_f softmax_f(4·s/‖s‖₂)·s over real frames."""
    valid = frame_mask.unsqueeze(0)  # [1, V, T]
    s = frame_cos.masked_fill(~valid, 0.0)
    norm = s.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    logits = (FRAME_WEIGHT_TEMPERATURE * s / norm).masked_fill(~valid, float("-inf"))
    w = torch.softmax(logits, dim=-1)
    return (w * s).sum(-1)


@register("ts2net", Ts2NetConfig)
class Ts2Net(Clip4ClipSeqTransf):
    """Text side as CLIP4Clip (EOT embedding); video side and score as described in the module doc."""

    inner_product = False

    def __init__(self, config: Ts2NetConfig) -> None:
        super().__init__(config)
        visual = self.backbone.visual
        depth = len(visual.blocks)
        for i in config.shift_blocks:
            if not -depth <= i < depth:
                raise TvrError(f"ts2net shift_blocks: block {i} does not exist in a {depth}-block ViT")
        self.shift_block_ids = sorted({i % depth for i in config.shift_blocks})
        n_tokens = visual.num_patches + 1
        if not 0 < config.top_k <= visual.num_patches:
            raise TvrError(f"ts2net top_k must be in 1..{visual.num_patches} (patches per frame), got {config.top_k}")
        stride = config.shift_stride if config.shift_stride is not None else default_shift_stride(n_tokens)
        # where the two sets overlap (a stride of 1 or 3), t+1 wins: shift_tokens writes it last, as the official code
        self.register_buffer("from_prev", shift_positions(n_tokens, stride, config.shift_from_previous), persistent=False)
        self.register_buffer("from_next", shift_positions(n_tokens, stride, config.shift_from_next), persistent=False)
        self.scorer = TokenScorer(config.backbone.embed_dim)

    # -- video tower ----------------------------------------------------------------------------
    def frame_tokens(self, frames: Tensor, mask: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] uint8 → projected tokens of the real frames [N, 1+L, D] (row-major),
        with token shift on the attention input of the shift blocks."""
        bb = self.backbone
        real = bb.real_pixels(frames, mask)  # only real frames enter the ViT
        prev, nxt = neighbour_rows(mask)

        def hook(x: Tensor) -> Tensor:
            return shift_tokens(x, prev, nxt, self.from_prev, self.from_next)

        blocks = [bb.visual.blocks[i] for i in self.shift_block_ids]
        with attn_input_hooks(blocks, hook):
            hidden = bb.visual.forward_tokens(real)
        return bb.visual.project(hidden)

    def select_tokens(self, tokens: Tensor) -> Tensor:
        """[N, 1+L, D] → [N, 1+k, D]: CLS then the k chosen patches in spatial order."""
        c = self.config
        scores = self.scorer(tokens)  # [N, L]
        patches = tokens[:, 1:]
        if self.training or c.selection == "perturbed":
            gen = None
            if not self.training:  # inference parity mode: fixed noise
                gen = torch.Generator(device=scores.device).manual_seed(c.selection_seed)
            sel = perturbed_top_k(scores, c.top_k, c.perturb_samples, c.perturb_sigma, gen)  # [N, k, L]
            chosen = torch.einsum("nkl,nld->nkd", sel, patches)
        else:
            idx = hard_top_k_indices(scores, c.top_k)  # [N, k]
            chosen = patches.gather(1, idx.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return torch.cat([tokens[:, :1], chosen], 1)

    def temporal_tokens(self, selected: Tensor, mask: Tensor) -> Tensor:
        """selected [B, T, 1+k, D] (padded frames zero) → per-frame CLS outputs [B, T, D]."""
        b, t, m, d = selected.shape
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"{t} frames exceed max_positions={self.frame_position.num_embeddings}")
        pos = self.frame_position(torch.arange(t, device=selected.device))  # every token of frame t
        x = (selected + pos[None, :, None, :]).reshape(b, t * m, d)
        valid = mask.repeat_interleave(m, dim=1)
        out = self.transformer(x, valid).reshape(b, t, m, d)[:, :, 0]
        return out + selected[:, :, 0]  # residual as seqTransf: the frame's own CLS

    def encode_video(self, batch: VideoBatch) -> VideoEmb:
        if batch.frames is None:
            raise ValueError(f"{self.method} needs frames in the VideoBatch")
        mask = batch.frame_mask
        selected = self.select_tokens(self.frame_tokens(batch.frames, mask))  # [N, 1+k, D]
        grid = selected.new_zeros(*mask.shape, *selected.shape[1:])
        grid[mask] = selected
        frames = F.normalize(self.temporal_tokens(grid, mask), dim=-1)
        frames = frames.masked_fill(~mask.unsqueeze(-1), 0.0)
        pooled = F.normalize(masked_mean(frames, mask), dim=-1)  # candidate vectors for the index
        return VideoEmb(pooled, frames=frames, frame_mask=mask, timestamps=batch.timestamps)

    # -- scoring --------------------------------------------------------------------------------
    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        assert video_emb.frames is not None and video_emb.frame_mask is not None
        frame_cos = torch.einsum("qd,vtd->qvt", text_emb.pooled, video_emb.frames)
        return frame_weighted_score(frame_cos, video_emb.frame_mask)

    def candidate_vectors(self, video_emb: VideoEmb) -> Tensor:
        """Mean-pooled normalised frame vectors: the first-stage ANN candidates (re-scored by similarity)."""
        return video_emb.pooled
