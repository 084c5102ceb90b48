"""A pretrained CLIP used as it is, with no training: CLIP4Clip-meanP over its frame embeddings.

The model a practitioner already has (a Hugging Face `CLIPModel` folder, an open_clip hub folder,
an open_clip name or config JSON with a weights file, a bare state-dict file; anything
`tvr.encoders.clip.load_clip` reads) becomes a `clip4clip-meanp` model: each sampled frame through
the image tower, L2-normalised, averaged, L2-normalised; captions through the text tower. meanP has
no parameters of its own, so its weights are exactly the checkpoint's and nothing is learned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvr.checksums import sha256_file
from tvr.errors import TvrError
from tvr.models.base import RetrievalModel

METHOD = "clip4clip-meanp"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")


@dataclass(frozen=True)
class ZeroShotSpec:
    """Which pretrained CLIP, and how frames are sampled from each video."""

    model: str  # folder, weights file, or open_clip name / config JSON (then `weights` is the state dict)
    weights: str | None = None
    tokenizer: str | None = None  # a tokenizer folder when none sits beside the weights
    num_frames: int = 12  # frames per video (with `fps`: the most per video; longer videos are spread evenly)
    fps: float | None = None  # sample at this rate instead of `num_frames` spread evenly

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise TvrError(f"--frames must be at least 1, got {self.num_frames}")
        if self.fps is not None and not self.fps > 0:
            raise TvrError(f"--fps must be > 0, got {self.fps}")


def _absolute(ref: str | None) -> str | None:
    """A path that exists, made absolute (a saved config must not depend on the current folder)."""
    if ref is None:
        return None
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def zero_shot_model(spec: ZeroShotSpec) -> RetrievalModel:
    """The meanP model over `spec.model`'s towers, in eval mode on CPU."""
    from tvr.models.backbone import BackboneConfig, adapt_to_backbone
    from tvr.models.clip4clip import Clip4ClipConfig
    from tvr.models.registry import build

    backbone = BackboneConfig(
        pretrained=_absolute(spec.model), pretrained_weights=_absolute(spec.weights), hf_tokenizer=_absolute(spec.tokenizer),
    )
    config = adapt_to_backbone(Clip4ClipConfig(num_frames=spec.num_frames, sample_fps=spec.fps, backbone=backbone), [])
    model = build(METHOD, config)
    model.requires_grad_(False)
    return model.eval()


def source_identity(spec: ZeroShotSpec) -> dict[str, Any]:
    """What the model was read from, with one sha256 over its files (weights, configs, tokenizer)."""
    files = []
    for ref in (spec.model, spec.weights, spec.tokenizer):
        if ref is None:
            continue
        path = Path(ref).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
        elif path.is_file():
            files.append(path)
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return {
        "model": _absolute(spec.model), "weights": _absolute(spec.weights), "tokenizer": _absolute(spec.tokenizer),
        "files_sha256": digest.hexdigest(), "n_files": len(files),
    }
