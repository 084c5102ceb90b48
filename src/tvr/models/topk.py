"""Top-k token selection as selection matrices: hard (inference) and perturbed (differentiable).

A selection of k out of N items is a [k, N] matrix whose row j is the one-hot of the j-th selected
index, indices sorted ascending so the selected tokens keep their spatial order. The perturbed
version (Berthet et al. 2020, as used by TS2-Net) averages the hard matrices of S noisy copies of
the scores, x + σ·Z with Z ~ N(0, I); its Jacobian estimate is E[Y(x+σZ) ⊗ Z] / σ.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hard_top_k_indices(scores: Tensor, k: int) -> Tensor:
    """[..., N] → [..., k] indices of the k largest scores, sorted ascending (spatial order)."""
    if not 0 < k <= scores.shape[-1]:
        raise ValueError(f"top-k needs 0 < k <= {scores.shape[-1]}, got k={k}")
    return scores.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values


def hard_top_k(scores: Tensor, k: int) -> Tensor:
    """[B, N] → [B, k, N] one-hot selection matrix of the hard top-k (no gradient to `scores`)."""
    idx = hard_top_k_indices(scores, k)
    return torch.nn.functional.one_hot(idx, scores.shape[-1]).to(scores.dtype)


class PerturbedTopK(torch.autograd.Function):
    """Mean of hard top-k selection matrices under given noise; backward = the perturbation estimator.

    forward(scores [B, N], noise [B, S, N], k, sigma) → [B, k, N]. The noise is an input (not drawn
    here) so callers choose the generator and tests can replay it exactly.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, noise: Tensor, k: int, sigma: float) -> Tensor:  # type: ignore[override]
        b, s, n = noise.shape
        idx = hard_top_k_indices(scores.unsqueeze(1) + sigma * noise, k)  # [B, S, k]
        counts = scores.new_zeros(b, k, n)
        # row j of sample s adds one at column idx[b, s, j]; sum over samples, then average
        counts.scatter_add_(2, idx.transpose(1, 2), scores.new_ones(b, k, s))
        ctx.save_for_backward(idx, noise)
        ctx.sigma = sigma
        return counts / s

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        idx, noise = ctx.saved_tensors  # [B, S, k], [B, S, N]
        s = noise.shape[1]
        # Σ_{j,d} g[b,j,d]·Y_s[j,d] picks g at the selected columns: a[b,s] = Σ_j g[b, j, idx[b,s,j]]
        picked = grad_out.unsqueeze(1).expand(-1, s, -1, -1).gather(3, idx.unsqueeze(-1)).squeeze(-1)  # [B, S, k]
        weight = picked.sum(-1)  # [B, S]
        grad_scores = torch.einsum("bs,bsn->bn", weight, noise) / (s * ctx.sigma)
        return grad_scores, None, None, None


def perturbed_top_k(
    scores: Tensor, k: int, samples: int, sigma: float, generator: torch.Generator | None = None
) -> Tensor:
    """[B, N] → [B, k, N] differentiable soft selection; noise from `generator` (default: global RNG)."""
    if samples < 1 or sigma <= 0:
        raise ValueError(f"perturbed top-k needs samples >= 1 and sigma > 0, got {samples}, {sigma}")
    noise = torch.randn(
        scores.shape[0], samples, scores.shape[-1], generator=generator, dtype=scores.dtype,
        device=scores.device if generator is None else generator.device,
    ).to(scores.device)
    return PerturbedTopK.apply(scores, noise, k, sigma)
