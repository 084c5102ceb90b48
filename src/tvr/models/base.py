"""The common model interface (DESIGN §2): what the trainer, evaluator, index and re-ranker see.

Every method is a `RetrievalModel`: it encodes texts and videos into its own structured embeddings
(`TextEmb` / `VideoEmb` or subclasses with more fields: tokens, experts, prototypes) and scores
them with `similarity` on the cosine scale; the learned logit scale stays separate (`logit_scale`).
Inner-product models also expose flat vectors so an ANN index can search them.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from tvr.data.batch import TextBatch, VideoBatch, VideoInputSpec

INIT_LOGIT_SCALE = 1 / 0.07  # CLIP's temperature init
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) at 100

E = TypeVar("E", bound="Embedding")


@dataclass(frozen=True)
class ModelConfig:
    """Fields every method shares: the frames it samples per video and their pixel size."""

    num_frames: int = 12  # T [paper: 12]; with `sample_fps`, the most frames of one clip
    image_size: int = 224  # square crop fed to the vision tower
    sample_fps: float | None = None  # None: T frames spread evenly; else this rate, T evenly beyond T/fps seconds

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.sample_fps is not None and not self.sample_fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {self.sample_fps}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")


class Embedding:
    """Helpers shared by every embedding dataclass: move, slice and concatenate along the batch axis.

    Fields may be tensors (batch-first), None, or dicts of tensors (e.g. one entry per expert).
    """

    def _map(self: E, fn: Any) -> E:
        def conv(v: Any) -> Any:
            if isinstance(v, Tensor):
                return fn(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        return dataclasses.replace(self, **{f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def to(self: E, device: torch.device | str) -> E:
        return self._map(lambda t: t.to(device))

    def detach(self: E) -> E:
        return self._map(lambda t: t.detach())

    def select(self: E, index: slice | Tensor | Sequence[int]) -> E:
        """Rows `index` of every batch-first field."""
        if not isinstance(index, (slice, Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.long)
        return self._map(lambda t: t[index] if not isinstance(index, Tensor) else t.index_select(0, index.to(t.device)))

    def __len__(self) -> int:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                return int(v.shape[0])
        raise ValueError(f"{type(self).__name__} has no tensor field")

    @classmethod
    def cat(cls: type[E], items: Sequence[E]) -> E:
        """Concatenate embeddings of several batches (all of type `cls`).

        Batches padded to different lengths (e.g. words: each text batch is padded to its longest
        caption) are zero-padded to the longest; masks are bool, so their padding reads False.
        """
        if not items:
            raise ValueError("nothing to concatenate")

        def join(vals: list[Any]) -> Any:
            first = vals[0]
            if isinstance(first, Tensor):
                return torch.cat(_pad_to_common_shape(vals), 0)
            if isinstance(first, dict):
                return {k: join([v[k] for v in vals]) for k in first}
            return first

        return dataclasses.replace(
            items[0], **{f.name: join([getattr(i, f.name) for i in items]) for f in dataclasses.fields(items[0])}
        )


def _pad_to_common_shape(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Zero-pad every tensor at the end of each non-batch axis to the largest size among them."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    out = []
    for t in tensors:
        pad: list[int] = []
        for d in reversed(range(1, t.dim())):
            pad += [0, shape[d - 1] - t.shape[d]]
        out.append(nn.functional.pad(t, pad) if any(pad) else t)
    return out


@dataclass
class TextEmb(Embedding):
    """A text's embedding: one pooled vector, optionally the token states it came from."""

    pooled: Tensor  # [N, D] (L2-normalised by models that score with cosine)
    tokens: Tensor | None = None  # [N, W, D'] per-token states (fine-grained methods)
    token_mask: Tensor | None = None  # [N, W] bool


@dataclass
class VideoEmb(Embedding):
    """A video's embedding: one pooled vector plus per-frame vectors (for the best moment)."""

    pooled: Tensor  # [N, D]
    frames: Tensor | None = None  # [N, T, D] per-frame vectors in the joint space
    frame_mask: Tensor | None = None  # [N, T] bool
    timestamps: Tensor | None = None  # [N, T] seconds
    tokens: Tensor | None = None  # [N, T, L, D'] per-frame patch tokens (fine-grained methods)


class RetrievalModel(nn.Module, abc.ABC):
    """Base of every retrieval method. Subclasses are registered with `tvr.models.registry.register`.

    `similarity` is on the cosine scale; `loss` multiplies by the clamped learned logit scale.
    """

    method: ClassVar[str] = ""  # set by the registry
    inner_product: ClassVar[bool] = False  # True: similarity == query_vectors @ gallery_vectors.T
    sees_frame_order: ClassVar[bool] = True  # False: reordering a clip's frames never changes its scores
    trainable: ClassVar[bool] = True  # False: assembled from trained models (an ensemble), never trained

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.logit_scale = nn.Parameter(torch.tensor(math.log(INIT_LOGIT_SCALE)))

    # -- what a method must provide -------------------------------------------------------------
    @abc.abstractmethod
    def encode_text(self, batch: TextBatch) -> TextEmb: ...

    @abc.abstractmethod
    def encode_video(self, batch: VideoBatch) -> VideoEmb: ...

    @abc.abstractmethod
    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """[n_text, n_video] scores on the cosine scale (no logit scale)."""

    # -- defaults a method may override ---------------------------------------------------------
    def input_spec(self) -> VideoInputSpec:
        """Frames / feature streams the data pipeline must supply."""
        return VideoInputSpec(self.config.num_frames, self.config.image_size, fps=self.config.sample_fps)

    @classmethod
    def adapt_config(cls, config: ModelConfig, train_captions: Sequence[str]) -> ModelConfig:
        """Fill in data-dependent config fields before training (e.g. a word vocabulary)."""
        return config

    def learns_logit_scale(self) -> bool:
        """Whether training fits `logit_scale` (False for a loss that never reads it)."""
        return True

    def scale(self) -> Tensor:
        """exp(logit_scale) clamped at 100, as in CLIP."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def loss(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """Symmetric InfoNCE over the batch; text i and video i are the positive pair."""
        from tvr.models.losses import symmetric_infonce

        return symmetric_infonce(self.similarity(text_emb, video_emb) * self.scale())

    def query_vectors(self, text_emb: TextEmb) -> Tensor:
        """[n_text, D] with similarity == query_vectors @ gallery_vectors.T (inner-product models)."""
        self._require_inner_product("query_vectors")
        return text_emb.pooled

    def gallery_vectors(self, video_emb: VideoEmb) -> Tensor:
        """[n_video, D]; see `query_vectors`."""
        self._require_inner_product("gallery_vectors")
        return video_emb.pooled

    def candidate_vectors(self, video_emb: VideoEmb) -> Tensor:
        """Vectors a first-stage ANN index may hold for a non-inner-product model (re-scored later)."""
        return video_emb.pooled

    def frame_similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """[n_text, n_video, T] cosine of the text with each frame (padded frames = -inf).

        Used to report the best-matching moment; falls back to the video score on every frame.
        """
        if video_emb.frames is None:
            s = self.similarity(text_emb, video_emb)
            return s.unsqueeze(-1)
        q = nn.functional.normalize(text_emb.pooled, dim=-1)
        f = nn.functional.normalize(video_emb.frames, dim=-1)
        s = torch.einsum("nd,vtd->nvt", q, f)
        if video_emb.frame_mask is not None:
            s = s.masked_fill(~video_emb.frame_mask.unsqueeze(0), float("-inf"))
        return s

    def _require_inner_product(self, what: str) -> None:
        if not self.inner_product:
            raise NotImplementedError(f"{self.method or type(self).__name__}: {what} needs an inner-product model")
