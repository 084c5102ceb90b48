"""Frame arrays → model input: resize the short side, centre-crop, scale and normalise.

The decoder normally delivers frames already at the encoder's size (DecodeSpec.size); this is the
fallback for frames of any size (arrays built by hand, other decoders), done the CLIP way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pixel_scale(mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as [1, 3, 1, 1] tensors on the 0–255 scale of uint8 frames: an image
    tower reads (frames - mean) / std."""
    return (torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1) * 255,
            torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1) * 255)


def resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N,3,H,W] float → [N,3,size,size]: bicubic (antialiased) short side to `size`, centre crop."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        images = F.interpolate(images, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[..., top : top + size, left : left + size]


def frames_to_unit(frames: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 [T,H,W,3] → float32 [T,3,S,S] in [0, 1] (resized/cropped when `size` is given)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}")
    arr = np.ascontiguousarray(frames)
    if not arr.flags.writeable:  # e.g. frames read zero-copy from Ray's object store
        arr = arr.copy()
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and len(x):
        x = resize_crop(x, size).clamp_(0.0, 1.0)
    return x


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x - mean) / std on [N,3,H,W]."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - m) / s


def resize_uint8(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T,H,W,3] → uint8 [T,size,size,3] (short side resize + centre crop, rounded)."""
    if frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames)
    x = frames_to_unit(frames, size)
    return (x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy())
