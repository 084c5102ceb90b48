"""Training a re-ranker (CrossTVR) on top of a frozen first-stage run.

Batches are the first-stage trainer's (`batches_for_epoch`: with `train.hard_negatives`, part of
each batch is groups of near-neighbour captions). Per batch of B (caption, video) positives: one
hard negative caption per video and one hard negative video per caption, each drawn within the batch
with probability ∝ exp(first-stage logit) (the first stage's own softmax over the batch, positives
and identical captions excluded); binary cross-entropy on the 3B match logits. The first stage
never trains: its tokens and embeddings are computed once before the first epoch. Checkpointing,
schedule, seeds, progress and `--resume` are the trainer's; the run's config.json records the first
stage and the sha256 of its weights.

Under torchrun (`tvr train --ddp N`) every rank draws the same global batch and the same hard
negatives (a function of the step), and scores its share of the 3B pairs: the positives and both
negatives of its slice of the batch, encoding only the captions and videos those pairs use. Each
rank divides its BCE sum by the global batch's pair count, so the averaged gradients are those of
one process on the global batch. With `train.order_negatives`, each caption that states a time order
is also paired with its own clip, halves swapped (`tvr.train.order_negatives`), as a negative.

With the re-ranker's `residual`, every pair's logit is a · (first-stage cosine) + the re-ranker's,
where a (and the head's starting bias) is the first stage's own logistic fit on the first epoch's
pairs (`calibrate_first_stage`): the re-ranker learns a correction to its first stage, and the
merge at search time adds it to the same a · cosine (`tvr.models.crosstvr`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tvr.data.pairs import PairSet, decode_clips, load_pairs
from tvr.errors import TvrError
from tvr.io.manifest import Manifest, read_manifest
from tvr.models.base import MAX_LOGIT_SCALE, RetrievalModel, TextEmb, VideoEmb
from tvr.models.crosstvr import frozen_frame_tokens, frozen_text_tokens, text_emb_from_tokens, video_emb_from_tokens
from tvr.models.registry import build, config_from_dict, first_stage_sha, load_model, lookup, make_config
from tvr.train.checkpoint import (
    has_checkpoint,
    read_trainer_state,
)
from tvr.train.distributed import Dist, joined
from tvr.train.epochs import Batch, EpochLoop, run_epochs, start_or_resume
from tvr.train.presets import TrainConfig, override, resolve
from tvr.train.trainer import FRAMES_DIR, TrainResult, batches_for_epoch, param_groups, resolve_device, split_for_training

TOKEN_BATCH = 32
FROZEN_CACHE_DIR = "rerank-cache"  # inside the first-stage run: its frozen tokens and embeddings


@dataclass
class FrozenPairs:
    """Everything the frozen first stage says about a PairSet, computed once."""

    pairs: PairSet
    text_tokens: torch.Tensor  # [n_captions, W, D]
    text_mask: torch.Tensor  # [n_captions, W]
    frame_tokens: torch.Tensor  # [n_clips, T, 1+L, D]
    frame_mask: torch.Tensor  # [n_clips, T]
    first_text: TextEmb  # first-stage embeddings (for the batch similarity)
    first_video: VideoEmb


@torch.no_grad()
def freeze_pairs(first: RetrievalModel, pairs: PairSet, device: torch.device) -> FrozenPairs:
    from tvr.models.encode import encode_clips

    first.eval()
    captions = [e.caption for e in pairs.entries]
    texts = [frozen_text_tokens(first, captions[i : i + 256]) for i in range(0, len(captions), 256)]
    width = max(t.shape[1] for t, _ in texts)
    text_tokens = torch.cat([F.pad(t, (0, 0, 0, width - t.shape[1])) for t, _ in texts]).cpu()
    text_mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for _, m in texts]).cpu()
    frames, masks = [], []
    for i in range(0, len(pairs.clips), TOKEN_BATCH):
        batch = pairs.clips.batch(range(i, min(i + TOKEN_BATCH, len(pairs.clips)))).to(device)
        frames.append(frozen_frame_tokens(first, batch).cpu())
        masks.append(batch.frame_mask.cpu())
    return FrozenPairs(
        pairs, text_tokens, text_mask, torch.cat(frames), torch.cat(masks),
        encode_padded_texts(first, captions, device), encode_clips(first, pairs.clips, device).to("cpu"),
    )


@torch.no_grad()
def encode_padded_texts(model: RetrievalModel, texts: list[str], device: torch.device, batch_size: int = 256) -> TextEmb:
    """`model.encode_text` in batches, token axes padded to one width (a text tower may trim each
    batch to its longest caption, so batches can differ in width)."""
    from tvr.data.batch import TextBatch

    parts = [model.encode_text(TextBatch(texts[i : i + batch_size]).to(device)).detach().to("cpu")
             for i in range(0, len(texts), batch_size)]
    if parts[0].tokens is not None and parts[0].token_mask is not None:
        width = max(p.tokens.shape[1] for p in parts)
        parts = [replace(p, tokens=F.pad(p.tokens, (0, 0, 0, width - p.tokens.shape[1])),
                         token_mask=F.pad(p.token_mask, (0, width - p.token_mask.shape[1]))) for p in parts]
    return type(parts[0]).cat(parts)


def cached_freeze(first: RetrievalModel, pairs: PairSet, device: torch.device, cache_dir: Path, sha: str) -> FrozenPairs:
    """`freeze_pairs`, stored in `cache_dir` under the first-stage weights' sha256 and the clips and
    captions, so ablations and resumed runs on one first stage skip the frozen encoders. Only plain
    TextEmb/VideoEmb first stages are cached (subclasses carry fields this file does not describe)."""
    import dataclasses
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from tvr.atomic import commit_temp, temp_path_beside

    ident = hashlib.sha256(json.dumps([sha, pairs.clips.keys, [e.caption for e in pairs.entries]]).encode()).hexdigest()
    path = cache_dir / f"frozen-{ident[:24]}.safetensors"
    names = ("text_tokens", "text_mask", "frame_tokens", "frame_mask")
    if path.is_file():
        data = load_file(str(path))

        def fields(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}

        return FrozenPairs(pairs, *(data[n] for n in names), TextEmb(**fields("first_text.")), VideoEmb(**fields("first_video.")))
    frozen = freeze_pairs(first, pairs, device)
    if type(frozen.first_text) is not TextEmb or type(frozen.first_video) is not VideoEmb:
        return frozen
    tensors = {n: getattr(frozen, n).contiguous() for n in names}
    for prefix, emb in (("first_text.", frozen.first_text), ("first_video.", frozen.first_video)):
        for f in dataclasses.fields(emb):
            value = getattr(emb, f.name)
            if isinstance(value, torch.Tensor):
                tensors[prefix + f.name] = value.contiguous()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(path)
    try:
        save_file(tensors, str(tmp))
        commit_temp(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return frozen


def frozen_from_store(first: RetrievalModel, manifest: Manifest, spec: Any, store: Path, workers: int, device: torch.device,
                      cache_dir: Path, sha: str) -> FrozenPairs:
    """`cached_freeze` of a manifest's decoded clips; the frames are closed once frozen (training
    reads only the frozen tokens and embeddings, never a frame)."""
    with load_pairs(manifest, spec, store, workers=workers, progress=False) as pairs:
        return cached_freeze(first, pairs, device, cache_dir, sha)


def sample_hard_negatives(
    first_logits: torch.Tensor, captions: list[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(hard negative caption for each video, hard negative video for each caption) of a [B, B]
    text×video logit matrix: p ∝ exp(logit) over the batch, excluding the positive and any item
    whose caption is identical to the positive's (a false negative)."""
    b = first_logits.shape[0]
    same = np.array([[captions[i] == captions[j] for j in range(b)] for i in range(b)])
    logits = first_logits.double().cpu().numpy()

    def draw(rows: np.ndarray) -> np.ndarray:
        out = np.empty(b, dtype=np.int64)
        for i in range(b):
            allowed = ~same[i]
            if not allowed.any():
                allowed = np.arange(b) != i
            w = np.where(allowed, np.exp(rows[i] - rows[i][allowed].max()), 0.0)
            out[i] = rng.choice(b, p=w / w.sum())
        return out

    neg_text_for_video = draw(logits.T)  # column j: which caption to pair with video j
    neg_video_for_text = draw(logits)
    return neg_text_for_video, neg_video_for_text


@torch.no_grad()
def first_stage_draws(
    first: RetrievalModel, frozen: FrozenPairs, caps: list[int], rows: list[int], rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(the batch's first-stage cosines [B, B] on the CPU, the hard negative caption of each video,
    the hard negative video of each caption): the draws of one training batch (`sample_hard_negatives`
    over the first stage's logits)."""
    caps_t, rows_t = torch.as_tensor(caps), torch.as_tensor(rows)
    cosine = first.similarity(frozen.first_text.select(caps_t), frozen.first_video.select(rows_t)).float().cpu()
    captions = [frozen.pairs.entries[c].caption for c in caps]
    neg_t, neg_v = sample_hard_negatives(cosine * first.scale().cpu(), captions, rng)
    return cosine, neg_t, neg_v


def batch_loss(
    reranker: Any, frozen: FrozenPairs, caps: list[int], rows: list[int], first: RetrievalModel, rng: np.random.Generator,
    device: torch.device, dist: Dist = Dist(), order_weight: float = 0.0,
) -> torch.Tensor:
    """BCE over the batch's positives and hard negatives (and, with `order_weight`, each order
    caption against its own clip with the halves swapped); with several processes, this rank's share.

    The sum over the pairs is divided by the global batch's pair count, times the number of ranks
    (their gradients are averaged), so the ranks together compute one process's mean."""
    from tvr.train.order_negatives import order_rows, swap_frames

    caps_t, rows_t = torch.as_tensor(caps), torch.as_tensor(rows)
    cosine, neg_t, neg_v = first_stage_draws(first, frozen, caps, rows, rng)  # the whole batch's, the same on every rank
    residual = bool(getattr(reranker.config, "residual", False))
    mine = np.array(dist.local_slice(list(range(len(caps)))), dtype=np.int64)
    text_idx = np.concatenate([mine, neg_t[mine], mine])  # positions within the batch
    video_idx = np.concatenate([mine, mine, neg_v[mine]])
    labels = torch.cat([torch.ones(len(mine)), torch.zeros(2 * len(mine))]).to(device)
    weights = torch.ones(3 * len(mine), device=device)
    n_pairs = 3 * len(caps)
    texts, text_pos = np.unique(text_idx, return_inverse=True)  # encode each caption and video once
    videos, video_pos = np.unique(video_idx, return_inverse=True)
    t_rows, v_rows = caps_t[torch.as_tensor(texts)], rows_t[torch.as_tensor(videos)]
    t = text_emb_from_tokens(reranker, frozen.text_tokens[t_rows].to(device), frozen.text_mask[t_rows].to(device))
    v = video_emb_from_tokens(reranker, frozen.frame_tokens[v_rows].to(device), frozen.frame_mask[v_rows].to(device))
    scores = reranker.score_pairs(t.select(torch.as_tensor(text_pos)), v.select(torch.as_tensor(video_pos)))
    if residual:  # the merged score: first-stage logit + the re-ranker's correction
        scores = scores + (cosine[text_idx, video_idx] * reranker.merge_weight).to(device)
    if order_weight > 0:
        frames = frozen.frame_mask[rows_t].sum(1).tolist()
        every = order_rows([frozen.pairs.entries[c].caption for c in caps], frames)  # the global batch's: the pair count every rank divides by
        n_pairs += len(every)
        ordered = np.array(sorted(set(every) & set(mine.tolist())), dtype=np.int64)
        if len(ordered):
            own = rows_t[torch.as_tensor(ordered)]
            mask = frozen.frame_mask[own]
            swapped = video_emb_from_tokens(reranker, swap_frames(frozen.frame_tokens[own], mask).to(device), mask.to(device))
            at = torch.as_tensor(np.searchsorted(texts, ordered))  # their rows among the encoded captions
            swapped_scores = reranker.score_pairs(t.select(at), swapped)
            if residual:  # the first stage's score of the clip as it was: the re-ranker alone must see the swap
                swapped_scores = swapped_scores + (cosine[ordered, ordered] * reranker.merge_weight).to(device)
            scores = torch.cat([scores, swapped_scores])
            labels = torch.cat([labels, torch.zeros(len(ordered), device=device)])
            weights = torch.cat([weights, torch.full((len(ordered),), float(order_weight), device=device)])
    bce = F.binary_cross_entropy_with_logits(scores, labels, weight=weights, reduction="sum")
    return bce * dist.world / n_pairs


@torch.no_grad()
def calibrate_first_stage(first: RetrievalModel, frozen: FrozenPairs, cfg: TrainConfig) -> tuple[float, float]:
    """(a, b): the logistic calibration σ(a·cosine + b) of the frozen first stage alone on the pairs
    of the first epoch (its positives and hard negatives, drawn as one process's training draws
    them), fitted by maximum likelihood. A residual re-ranker starts from it: `first_stage_scale` = a,
    head bias = b, head weights 0, so its first logits are the first stage's best BCE fit and the
    training loss starts where the first stage alone stands.

    Why not the first stage's own logit scale and −log 2: InfoNCE fits its scale for a softmax over
    the batch, not for a sigmoid; at seqTransf's 17.4 with that bias the first loss was 4.2 (chance
    is 0.64), and the bias, moving at the optimiser's pace, took epochs to recover."""
    xs, ys = [], []
    for b, (caps, rows) in enumerate(batches_for_epoch(frozen.pairs, cfg, 0)):
        if len(caps) < 2:  # no negative to draw (a one-video set fails with its own message later)
            continue
        rng = np.random.default_rng([cfg.seed, 0, b])  # the first epoch's draws, as `batch_loss` makes them
        cosine, neg_t, neg_v = first_stage_draws(first, frozen, caps, rows, rng)
        cosine = cosine.double()
        every = np.arange(len(caps))
        xs += [cosine[every, every].numpy(), cosine[neg_t, every].numpy(), cosine[every, neg_v].numpy()]
        ys += [np.ones(len(caps)), np.zeros(2 * len(caps))]
    if not xs:
        return float(first.scale()), -math.log(2.0)
    return fit_logistic(np.concatenate(xs), np.concatenate(ys), fallback_scale=float(first.scale()))


def fit_logistic(x: np.ndarray, y: np.ndarray, fallback_scale: float, max_scale: float = MAX_LOGIT_SCALE) -> tuple[float, float]:
    """Maximum-likelihood (a, b) of P(y = 1) = σ(a·x + b) by Newton's method (the negative
    log-likelihood is convex in (a, b)). Separable data (every positive above every negative, where
    a diverges) or a fit that does not rank positives higher (a ≤ 0) falls back to a =
    `fallback_scale` with b fitted alone. Nearly separable data drives a towards infinity too: a is
    capped at `max_scale` (CLIP's largest logit scale), with b refitted for it."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def nll(p: np.ndarray) -> float:
        z = p[0] * x + p[1]
        return float(-(y * log_expit(z) + (1 - y) * log_expit(-z)).mean())

    def grad(p: np.ndarray) -> np.ndarray:
        r = expit(p[0] * x + p[1]) - y
        return np.array([(r * x).mean(), r.mean()])

    def hess(p: np.ndarray) -> np.ndarray:
        w = expit(p[0] * x + p[1])
        w = w * (1 - w)
        return np.array([[(w * x * x).mean(), (w * x).mean()], [(w * x).mean(), w.mean()]])

    a0 = fallback_scale
    b0 = -a0 * float(x.mean())
    positives, negatives = x[y > 0.5], x[y <= 0.5]
    separable = len(positives) == 0 or len(negatives) == 0 or positives.min() > negatives.max()
    if not separable:
        fit = minimize(nll, np.array([a0, b0]), jac=grad, hess=hess, method="trust-exact", options={"gtol": 1e-10})
        a, b = (float(v) for v in fit.x)
        # trust-exact can report "a bad approximation" at the optimum, once float rounding stops the
        # model from predicting a gain below gtol: the gradient itself says whether it converged
        converged = fit.success or float(np.abs(grad(fit.x)).max()) < 1e-7
        if converged and 0 < a <= max_scale:
            return a, b
        if a > max_scale:
            a0 = max_scale
            b0 = -a0 * float(x.mean())
    one = minimize(lambda q: nll(np.array([a0, q[0]])), np.array([b0]), jac=lambda q: grad(np.array([a0, q[0]]))[1:],
                   method="BFGS")
    return a0, float(one.x[0])


@torch.no_grad()
def validate_two_stage(first: RetrievalModel, reranker: Any, frozen: FrozenPairs, device: torch.device, k: int) -> dict[str, Any]:
    from tvr.eval.metrics import retrieval_metrics
    from tvr.postproc.two_stage import two_stage_scores

    reranker.eval()
    first_qg = first.similarity(frozen.first_text, frozen.first_video).double().numpy()
    gt = [int(r) for r in frozen.pairs.video_rows]
    t = text_emb_from_tokens(reranker, frozen.text_tokens.to(device), frozen.text_mask.to(device))
    v = video_emb_from_tokens(reranker, frozen.frame_tokens.to(device), frozen.frame_mask.to(device))

    def rescore(q: np.ndarray, g: np.ndarray) -> np.ndarray:
        return reranker.score_pairs(t.select(torch.as_tensor(q)), v.select(torch.as_tensor(g))).double().cpu().numpy()

    final = two_stage_scores(first_qg, k, rescore, first_weight=reranker.merge_weight)
    return {"t2v": retrieval_metrics(final, gt)["t2v"], "first_stage_t2v": retrieval_metrics(first_qg, gt)["t2v"]}


def new_reranker_config(model_cfg: Any, first: RetrievalModel, frozen: FrozenPairs, cfg: TrainConfig) -> tuple[Any, float | None]:
    """A new run's re-ranker config, with the width of the frozen tokens and, when residual, the
    slope of the first stage's calibration; and the head's starting bias (the calibration's b), or
    None when not residual."""
    model_cfg = replace(model_cfg, width=int(frozen.frame_tokens.shape[-1]))
    if not getattr(model_cfg, "residual", False):
        return model_cfg, None
    scale, bias = calibrate_first_stage(first, frozen, cfg)
    return replace(model_cfg, first_stage_scale=scale), bias


def build_reranker(method: str, model_cfg: Any, seed: int, start_bias: float | None) -> Any:
    """The re-ranker with its parameters drawn from `seed`, its head bias at `start_bias` if given."""
    torch.manual_seed(seed)  # parameter init
    model = build(method, model_cfg)
    if start_bias is not None:
        with torch.no_grad():
            model.head.bias.fill_(start_bias)
    return model


def train_rerank(
    manifest_path: Path,
    method: str,
    run_dir: Path,
    *,
    first_stage: Path | None,
    config_file: Path | None = None,
    epochs: int | None = None,
    device: str = "cpu",
    resume: bool = False,
    resume_previous: bool = False,
    seed: int | None = None,
    progress: bool = True,
    val_k: int = 15,
) -> TrainResult:
    """Train re-ranker `method` on a frozen first stage (`first_stage` run dir) into `run_dir`.

    Under torchrun (WORLD_SIZE > 1) every process scores its share of each global batch (module
    docstring); rank 0 writes the run."""
    with joined(resolve_device(device)) as (dist, dev):
        return _train_rerank(manifest_path, method, run_dir, first_stage=first_stage, config_file=config_file, epochs=epochs,
                             dev=dev, resume=resume, resume_previous=resume_previous, seed=seed,
                             progress=progress and dist.is_main, val_k=val_k, dist=dist)


def _train_rerank(
    manifest_path: Path, method: str, run_dir: Path, *, first_stage: Path | None, config_file: Path | None,
    epochs: int | None, dev: torch.device, resume: bool, resume_previous: bool, seed: int | None, progress: bool,
    val_k: int, dist: Dist,
) -> TrainResult:
    from tvr.models.registry import read_checkpoint_config

    t0 = time.monotonic()
    cls, _ = lookup(method)
    if not getattr(cls, "reranker", False):
        raise TvrError(f"method {method!r} is not a re-ranker; --first-stage is only for re-ranking methods")
    if epochs is not None and epochs < 1:
        raise TvrError(f"--epochs must be at least 1, got {epochs}")
    manifest = read_manifest(manifest_path)
    state: dict[str, Any] | None = None
    if resume:
        state = read_trainer_state(run_dir, previous=resume_previous)
        found, model_cfg, doc = read_checkpoint_config(run_dir)
        if found != method:
            raise TvrError(f"{run_dir}: holds a {found!r} run, cannot resume it as {method!r}")
        saved = Path(doc.get("first_stage", ""))
        if first_stage is not None and Path(first_stage).resolve() != saved:
            raise TvrError(f"{run_dir}: was trained on first stage {saved}, not {first_stage}")
        first_stage = saved
        if first_stage_sha(first_stage) != doc.get("first_stage_sha256"):
            raise TvrError(f"{first_stage}: the first-stage weights changed since {run_dir} started; start a new run")
        train_cfg = config_from_dict(TrainConfig, state["train"], where=f"{run_dir}: train")
        train_cfg = override(train_cfg, epochs=epochs)
        preset = state.get("preset", "")
    else:
        if first_stage is None:
            raise TvrError(f"method {method!r} re-ranks a first stage: pass --first-stage RUN_DIR")
        if has_checkpoint(run_dir):
            raise TvrError(f"{run_dir}: already holds a training run; pass --resume or choose another --out")
        resolved = resolve(config_file, method)  # the first stage's backbone is reused: no pretrain or objects recipe
        preset, overrides = resolved.preset, resolved.model
        train_cfg = override(resolved.train, epochs=epochs, seed=seed)
        if train_cfg.soup:
            raise TvrError(f"{config_file}: train.soup: a re-ranker is trained as one run; average its runs with tvr soup")
        model_cfg = None
    first_stage = Path(first_stage).resolve()
    sha = first_stage_sha(first_stage)
    first = load_model(first_stage, device=dev)
    for p in first.parameters():
        p.requires_grad_(False)
    if getattr(type(first), "reranker", False):
        raise TvrError(f"{first_stage}: is itself a re-ranker; --first-stage needs a retrieval model run")

    frozen_text_tokens(first, [manifest.entries[0].caption])  # a first stage without tokens fails here, before decoding
    spec = first.input_spec()
    if model_cfg is None:  # the frames the re-ranker reads are the first stage's
        fixed = {"num_frames": spec.num_frames, "image_size": spec.image_size}
        model_cfg = make_config(method, {**overrides, **fixed}, where=f"{config_file or 'model config'}: model")

    train_m, val_m = split_for_training(manifest, train_cfg)
    store = first_stage / FRAMES_DIR  # the first stage's frame cache, shared (decoded once)
    both = Manifest(train_m.entries + (val_m.entries if val_m else ()), manifest.root, manifest.source)
    cache = first_stage / FROZEN_CACHE_DIR
    for turn in range(dist.world):  # rank 0 decodes and freezes (cached); the others then find both done
        if turn == dist.rank:
            decode_clips(both, spec, store, workers=train_cfg.workers, progress=progress)
            train_frozen = frozen_from_store(first, train_m, spec, store, train_cfg.workers, dev, cache, sha)
            val_frozen = frozen_from_store(first, val_m, spec, store, train_cfg.workers, dev, cache, sha) if val_m else None
        dist.barrier()
    width = int(train_frozen.frame_tokens.shape[-1])
    if int(train_frozen.text_tokens.shape[-1]) != width:
        raise TvrError(f"{first_stage}: text tokens ({train_frozen.text_tokens.shape[-1]}) and frame tokens ({width}) differ in width")
    start_bias = None  # a new residual re-ranker's head bias: the first stage's calibration
    if not resume:
        model_cfg, start_bias = new_reranker_config(model_cfg, first, train_frozen, train_cfg)
    if model_cfg.width != width:
        raise TvrError(f"{run_dir}: re-ranker width {model_cfg.width} does not fit the first stage's tokens ({width})")
    model = build_reranker(method, model_cfg, train_cfg.seed, start_bias).to(dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg), lr=train_cfg.lr)
    extra = {
        "first_stage": str(first_stage), "first_stage_sha256": sha, "first_stage_method": first.method,
        "training": {"preset": preset, "train": asdict(train_cfg), "manifest": str(manifest_path)},
    }

    order_weight = train_cfg.order_negatives if model.sees_frame_order else 0.0

    def loss(epoch: int, b: int, batch: Batch) -> torch.Tensor:
        rng = np.random.default_rng([train_cfg.seed, epoch, b])  # negatives: a function of the step
        return batch_loss(model, train_frozen, *batch, first, rng, dev, dist, order_weight)

    loop = EpochLoop(
        run_dir, model, optimizer, train_cfg,
        batches=lambda epoch: batches_for_epoch(train_frozen.pairs, train_cfg, epoch), loss=loss,
        validate=(lambda: validate_two_stage(first, model, val_frozen, dev, val_k)) if val_frozen is not None else None,
        state={"method": method, "preset": preset}, extra=extra, source=str(manifest.source), progress=progress, dist=dist,
    )
    start_epoch, step, history = start_or_resume(loop, state)
    history = run_epochs(loop, start_epoch, step, history)
    return TrainResult(run_dir, train_cfg.epochs, history, time.monotonic() - t0)


