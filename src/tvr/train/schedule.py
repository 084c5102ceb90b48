"""Learning-rate schedule: linear warmup then cosine decay, a pure function of the step.

Being stateless (lr = f(step)), resuming needs only the step count, never a scheduler object.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_lr(optimizer: Optimizer, factor: float) -> None:
    """Set each param group's lr to its `base_lr` × factor."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
