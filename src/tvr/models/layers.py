"""Blocks shared by several methods: pre-norm transformer with padding masks, masked pooling and
standardisation."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean of `x` over `dim` counting only positions where `mask` is True (padding contributes 0).

    `mask` has x's shape without the trailing feature axis. Rows with no valid entry give 0.
    """
    m = mask.to(x.dtype).unsqueeze(-1)
    x = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))  # NaN-proof padding
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


class MaskedStandardize(nn.Module):
    """Per-dimension standardisation of the valid rows of x [B, K, D]: BatchNorm without the affine
    part, over the features where `mask` [B, K] is True. Training normalises with the batch's
    statistics and keeps running averages; eval uses the running ones. A training batch with fewer
    than two valid rows uses the running statistics (and leaves them alone). Padding stays 0.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=momentum, eps=eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        valid = x[mask]  # [M, D]
        if self.training and valid.shape[0] > 1:
            normed = self.norm(valid)
        else:
            n = self.norm
            normed = F.batch_norm(valid, n.running_mean, n.running_var, training=False, eps=n.eps)
        out = torch.zeros_like(x)
        out[mask] = normed
        return out


class QuickGELU(nn.Module):
    """CLIP's activation x·σ(1.702x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP, as in CLIP's transformer, with a key padding mask."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(hidden, width))])
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """x [B, N, D]; pad_mask [B, N] True = padding (ignored as a key)."""
        h = self.ln_1(x)
        a, _ = self.attn(h, h, h, key_padding_mask=pad_mask, need_weights=False)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.ln_2(x)))


class TemporalTransformer(nn.Module):
    """A stack of residual attention blocks over a padded sequence (frames, tokens, experts)."""

    def __init__(self, width: int, layers: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, dropout=dropout) for _ in range(layers))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x [B, N, D]; valid [B, N] True = real position. Padded outputs are zeroed."""
        pad = ~valid
        for block in self.resblocks:
            x = block(x, pad)
        return x.masked_fill(pad.unsqueeze(-1), 0.0)
