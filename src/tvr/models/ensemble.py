"""Late fusion of trained runs: one model whose logits are the sum of its members' logits.

The methods see different contrasts — an audio expert tells a changed sound apart, a temporal
transformer a swapped order, mean pooling a small object — so their scores are complementary.
An ensemble scores a caption against a video as

    s(t, v) = Σ_m α_m · s_m(t, v),    α_m = w_m · λ_m / Σ_k w_k · λ_k,

where s_m is member m's cosine-scale similarity, λ_m its learned logit scale and w_m a user weight
(1 by default). With equal weights the ensemble's logits λ · s, λ = Σ_m w_m λ_m, are the sum of the
members' logits: a product of the members' softmax distributions over the gallery. The score
stays on the cosine scale (a convex combination), so QB-Norm's β and every post-processor apply
unchanged.

Every member must be an inner-product model (`query_vectors · gallery_vectors`); the ensemble is
then one too, with the members' vectors concatenated and scaled by √α_m, so an ANN index holds it
like any single model. Members must sample frames the same way (frames per clip, pixel size,
rate). The ensemble reads the union of their feature streams; one encoder read with different
options (two `objects` networks) is two streams, each fed to the members that read it. It is
assembled from run directories by `tvr ensemble`, never trained, and saved as an ordinary checkpoint
holding every member's config and weights, so it does not depend on the member folders afterwards.
The best moment comes from the first member that scores frames the standard way (text vector
against each frame vector: CLIP4Clip); an ensemble without one (MMT alone) reports none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tvr.data.batch import TextBatch, VideoBatch, VideoInputSpec
from tvr.errors import TvrError
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.registry import build, config_to_dict, load_model, make_config, register, save_model


@dataclass(frozen=True)
class EnsembleConfig(ModelConfig):
    # one {"method": name, "config": {...}} per member, as its checkpoint's config.json holds them
    members: tuple[dict[str, Any], ...] = ()
    weights: tuple[float, ...] = ()  # w_m, one per member; empty: 1 each

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(self.members)}")
        for i, m in enumerate(self.members):
            if not isinstance(m, dict) or not isinstance(m.get("method"), str) or not isinstance(m.get("config"), dict):
                raise ValueError(f"members[{i}] must be {{'method': name, 'config': {{...}}}}")
        if self.weights and len(self.weights) != len(self.members):
            raise ValueError(f"weights has {len(self.weights)} values for {len(self.members)} members")
        if not all(math.isfinite(w) and w > 0 for w in self.weights):
            raise ValueError(f"weights must be finite and > 0, got {list(self.weights)}")


@dataclass
class EnsembleTextEmb(TextEmb):
    moment_query: Tensor | None = None  # [N, D'] the moment member's text vector, against its frame vectors


@register("ensemble", EnsembleConfig)
class Ensemble(RetrievalModel):
    inner_product = True
    trainable = False

    def __init__(self, config: EnsembleConfig, built: Sequence[RetrievalModel] | None = None) -> None:
        """`built`: the members already constructed from `config.members` (by `assemble`), else built here."""
        super().__init__(config)
        self.logit_scale.requires_grad_(False)  # unused: the members' scales decide
        members = []
        for i, m in enumerate(config.members):
            model = built[i] if built is not None else build(
                m["method"], make_config(m["method"], m["config"], where=f"members[{i}].config"))
            if not model.inner_product:
                raise ValueError(f"members[{i}] is a {m['method']!r} model, which is not an inner-product model; "
                                 "an ensemble concatenates its members' index vectors")
            if not config.weights and not model.learns_logit_scale():
                raise ValueError(f"members[{i}] ({m['method']}) was trained with a loss that never fits its logit "
                                 "scale, so the scale cannot weigh it; give explicit weights")
            members.append(model)
        self.members = nn.ModuleList(members)
        conflict = sampling_conflict([m.method for m in members], [m.input_spec() for m in members])
        if conflict:
            raise ValueError(conflict)
        self.weights = tuple(config.weights) or (1.0,) * len(members)
        standard = [i for i, m in enumerate(members) if type(m).frame_similarity is RetrievalModel.frame_similarity]
        self.moment_member = standard[0] if standard else None

    @property
    def sees_frame_order(self) -> bool:  # type: ignore[override]
        return any(m.sees_frame_order for m in self.members)

    def input_spec(self) -> VideoInputSpec:
        specs = [m.input_spec() for m in self.members]
        streams = tuple(dict.fromkeys(s for spec in specs for s in spec.streams))
        size = next((s.image_size for s in specs if s.pixels), specs[0].image_size)
        return VideoInputSpec(specs[0].num_frames, size, streams=streams, pixels=any(s.pixels for s in specs),
                              fps=specs[0].fps)

    def member_logit_scales(self) -> Tensor:
        """w_m · λ_m per member [M]."""
        return torch.stack([w * m.scale().detach() for w, m in zip(self.weights, self.members)])

    def alphas(self) -> Tensor:
        """The members' shares α_m of the score [M] (sum 1)."""
        s = self.member_logit_scales()
        return s / s.sum()

    def scale(self) -> Tensor:
        """λ = Σ_m w_m λ_m: the ensemble's logits λ · s are the sum of the members' weighted logits."""
        return self.member_logit_scales().sum()

    def encode_text(self, batch: TextBatch) -> EnsembleTextEmb:
        embs = [m.encode_text(batch) for m in self.members]
        parts = [a.sqrt() * m.query_vectors(e) for a, m, e in zip(self.alphas(), self.members, embs)]
        moment = None if self.moment_member is None else embs[self.moment_member].pooled
        return EnsembleTextEmb(torch.cat(parts, dim=1), moment_query=moment)

    def encode_video(self, batch: VideoBatch) -> VideoEmb:
        embs = [m.encode_video(batch) for m in self.members]
        parts = [a.sqrt() * m.gallery_vectors(e) for a, m, e in zip(self.alphas(), self.members, embs)]
        if self.moment_member is None:
            return VideoEmb(torch.cat(parts, dim=1))
        own = embs[self.moment_member]
        return VideoEmb(torch.cat(parts, dim=1), frames=own.frames, frame_mask=own.frame_mask, timestamps=own.timestamps)

    def similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        return text_emb.pooled @ video_emb.pooled.T

    def frame_similarity(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        """The moment member's per-frame cosines (the whole-clip score on every frame without one)."""
        query = getattr(text_emb, "moment_query", None)
        if query is None or video_emb.frames is None:
            return self.similarity(text_emb, video_emb).unsqueeze(-1)
        return super().frame_similarity(TextEmb(query), video_emb)

    def loss(self, text_emb: TextEmb, video_emb: VideoEmb) -> Tensor:
        raise NotImplementedError("an ensemble is assembled from trained runs (tvr ensemble), not trained")


def sampling_conflict(methods: Sequence[str], specs: Sequence[VideoInputSpec]) -> str | None:
    """Why models of these methods and input specs cannot be fused, or None: they must take the
    same frames per clip at the same rate, and the same pixel size where they read pixels."""
    clocks = {(s.num_frames, s.fps) for s in specs}
    sizes = {s.image_size for s in specs if s.pixels}
    if len(clocks) <= 1 and len(sizes) <= 1:
        return None
    return "members sample frames differently (frames per clip, rate, pixel size): " + ", ".join(
        f"{m} {(s.num_frames, s.fps, s.image_size if s.pixels else None)}" for m, s in zip(methods, specs))


def assemble(runs: list[Any], weights: tuple[float, ...] = ()) -> Ensemble:
    """An ensemble of loaded member models (`tvr.models.registry.load_model`); it holds them, not copies."""
    members = tuple({"method": r.method, "config": config_to_dict(r.config)} for r in runs)
    specs = [r.input_spec() for r in runs]
    first = next((s for s in specs if s.pixels), specs[0])
    config = EnsembleConfig(num_frames=first.num_frames, image_size=first.image_size, sample_fps=first.fps,
                            members=members, weights=tuple(weights))
    return Ensemble(config, runs).eval()


def write_ensemble(runs: list[Path], out: Path, weights: tuple[float, ...] = (), force: bool = False) -> dict[str, Any]:
    """Load the run directories `runs`, fuse them and save the checkpoint folder `out`
    (`tvr.models.assembled`: where it may be written, --force, atomic, querybank = the runs'
    training captions). Returns a summary."""
    from tvr.models.assembled import checked_out, member_records, merged_captions, publish

    out, runs = checked_out(out, runs, force, "ensemble")
    records = member_records(runs)  # checksums before loading
    loaded = [load_model(r) for r in runs]
    try:
        model = assemble(loaded, weights)
    except ValueError as exc:
        raise TvrError(f"cannot fuse {', '.join(map(str, runs))}: {exc}") from None
    members = [{"run": rec["run"], "method": m.method, "weights_sha256": rec["weights_sha256"], "share": round(a, 6)}
               | ({"training": rec["training"]} if "training" in rec else {})
               for rec, m, a in zip(records, loaded, model.alphas().tolist())]
    publish(out, lambda folder: save_model(model, folder, extra={"ensemble_of": members}), merged_captions(runs))
    return {"path": str(out), "members": members, "logit_scale": float(model.scale())}
