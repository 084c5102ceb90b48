"""Which runs to fuse: ensemble selection on held-out captions (Caruana et al., 2004).

An ensemble's logits are its members' logits weighted and summed (`tvr.models.ensemble`:
Σ_m w_m λ_m s_m), so any choice of members and integer weights can be scored from each candidate's
logit matrix on a held-out split, without building a model. Two procedures:

- `forward`: start from the candidate with the best R@1 alone and add, one at a time, the candidate
  whose addition lifts R@1 most, each at most once, until none lifts it (equal weights).
- `bagged`: the same with replacement, repeated on random halves of the captions' units (videos, or
  groups of near-duplicates), each candidate weighted by how often it was added over all bags. This
  is the paper's remedy for forward selection fitting the split it selects on.

Ties go to the candidate listed first. Ranks follow `tvr.eval.metrics.ranks` (ties pessimistic).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvr.errors import TvrError
from tvr.eval.metrics import ranks
from tvr.io.manifest import Manifest


@dataclass(frozen=True)
class Step:
    """One ensemble on the forward path: its members (in the order added) and its R@1 (%)."""

    members: tuple[str, ...]
    r1: float


def r_at_1(logits_qg: np.ndarray, gt: Sequence[int]) -> float:
    """t2v R@1 in percent of a caption × video logit matrix."""
    return float(np.mean(ranks(logits_qg, gt) == 1) * 100.0)


def _check(logits: Mapping[str, np.ndarray], gt: Sequence[int]) -> list[str]:
    names = list(logits)
    if len(names) < 2:
        raise ValueError(f"selection needs at least two candidates, got {len(names)}")
    shapes = {np.shape(v) for v in logits.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != len(gt):
        raise ValueError(f"every candidate needs a [{len(gt)} captions, videos] logit matrix, got {sorted(shapes)}")
    return names


def _climb(logits: Mapping[str, np.ndarray], gt: Sequence[int], repeats: bool) -> list[Step]:
    """From the candidate best alone, add the one whose addition lifts R@1 most (again, if `repeats`)
    until none lifts it: the path of ensembles."""
    names = list(logits)
    alone = {m: r_at_1(logits[m], gt) for m in names}
    first = max(names, key=lambda m: alone[m])
    path = [Step((first,), alone[first])]
    fused = np.asarray(logits[first], dtype=np.float64).copy()
    while True:
        rest = names if repeats else [m for m in names if m not in path[-1].members]
        if not rest:
            return path
        trial = {m: r_at_1(fused + logits[m], gt) for m in rest}
        best = max(rest, key=lambda m: trial[m])
        if trial[best] <= path[-1].r1:
            return path
        fused = fused + logits[best]
        path.append(Step(path[-1].members + (best,), trial[best]))


def forward(logits: Mapping[str, np.ndarray], gt: Sequence[int]) -> list[Step]:
    """Forward selection without replacement; the last step is the choice."""
    _check(logits, gt)
    return _climb(logits, gt, repeats=False)


def bagged(logits: Mapping[str, np.ndarray], gt: Sequence[int], units: Sequence[Hashable], *, bags: int = 20,
           seed: int = 0) -> dict[str, int]:
    """Bagged forward selection with replacement: weight = times added over `bags` random halves of
    the distinct `units` (one per caption; captions of one unit stay together). Only picked runs."""
    names = _check(logits, gt)
    if bags < 1:
        raise ValueError(f"bags must be at least 1, got {bags}")
    if len(units) != len(gt):
        raise ValueError(f"{len(units)} units for {len(gt)} captions")
    gt_arr = np.asarray(gt)
    unit_ids = np.unique(np.asarray([str(u) for u in units]), return_inverse=True)[1]
    n_units = int(unit_ids.max()) + 1
    if n_units < 2:
        raise ValueError("bagging needs captions of at least two videos (units)")
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(names, 0)
    for _ in range(bags):
        rows = np.isin(unit_ids, rng.choice(n_units, n_units // 2, replace=False))
        sub = {m: np.asarray(logits[m], dtype=np.float64)[rows] for m in names}
        for m in _climb(sub, gt_arr[rows].tolist(), repeats=True)[-1].members:
            counts[m] += 1
    return {m: c for m, c in counts.items() if c}


@dataclass(frozen=True)
class Selection:
    """The runs chosen for an ensemble on a held-out split, with their weights and the evidence."""

    runs: tuple[Path, ...]
    weights: tuple[float, ...]
    r1: float  # the chosen ensemble's R@1 on the split
    alone: dict[str, float]  # each candidate's R@1 on the split
    path: tuple[Step, ...]  # forward selection's path (bagging: empty)
    captions: int

    def summary(self) -> dict[str, Any]:
        return {"runs": [str(r) for r in self.runs], "weights": list(self.weights), "R@1": round(self.r1, 2),
                "alone": {k: round(v, 2) for k, v in self.alone.items()}, "captions": self.captions,
                "path": [{"members": list(s.members), "R@1": round(s.r1, 2)} for s in self.path]}


@dataclass(frozen=True)
class RunScores:
    """One run's scores on a manifest's captions and clips."""

    scores: np.ndarray  # [captions, clips] on the cosine scale, float64
    gt: list[int]  # each caption's clip column
    scale: float  # the run's logit scale λ
    entries: list[Any]  # each caption's manifest entry
    clips: tuple[str, ...]  # the feature-store key of each clip column


def run_scores(model: Any, manifest: Manifest, store_dir: Path, *, workers: int = 2, progress: bool = True,
               device: Any = "cpu") -> RunScores:
    """Score a loaded run on every caption × clip of `manifest`, frames cached in `store_dir`."""
    import torch

    from tvr.data.pairs import load_pairs
    from tvr.models.encode import pair_scores

    with load_pairs(manifest, model.input_spec(), store_dir, workers=workers, progress=progress) as pairs:
        with torch.no_grad():
            scores, gt = pair_scores(model, pairs, device)
            scale = float(model.scale())
        return RunScores(np.asarray(scores, dtype=np.float64), gt, scale, list(pairs.entries), tuple(pairs.clips.keys))


def choose(runs: Sequence[Path], manifest: Manifest, frames_dir: str, *, bags: int = 0, seed: int = 0, workers: int = 2,
           progress: bool = True, device: Any = "cpu") -> Selection:
    """Score every run on `manifest` (each in its own frame store `RUN/frames_dir`, as `tvr eval`
    does) and choose the members: forward selection, or bagged selection over `bags` halves of the
    videos (or of the near-duplicate groups, where entries name a "group")."""
    from tvr.models.ensemble import sampling_conflict
    from tvr.models.registry import load_model

    logits, first, first_spec = {}, None, None
    for run in runs:
        model = load_model(run, device=device)
        if not model.inner_product:
            raise TvrError(f"{run}: a {model.method} model is not an inner-product model; an ensemble cannot hold it")
        first_spec = first_spec or (model.method, model.input_spec())
        conflict = sampling_conflict([first_spec[0], model.method], [first_spec[1], model.input_spec()])
        if conflict:  # found before this run is scored, not after every run was
            raise TvrError(f"{run} cannot be fused with {runs[0]}: {conflict}")
        scored = run_scores(model, manifest, Path(run) / frames_dir, workers=workers, progress=progress, device=device)
        first = first or scored
        if (scored.clips, scored.gt) != (first.clips, first.gt):
            raise TvrError(f"{run}: decodes other clips of {manifest.source or 'the manifest'} than {runs[0]}; "
                           "selection needs every run scored on the same captions and videos")
        logits[str(run)] = scored.scale * scored.scores
    assert first is not None
    gt, entries = first.gt, first.entries
    alone = {m: r_at_1(v, gt) for m, v in logits.items()}
    if bags:
        units = [e.extra.get("group", e.video) for e in entries]
        picks = bagged(logits, gt, units, bags=bags, seed=seed)
        chosen, weights, path = list(picks), tuple(float(c) for c in picks.values()), ()
    else:
        path = tuple(forward(logits, gt))
        chosen, weights = list(path[-1].members), (1.0,) * len(path[-1].members)
    fused = sum(w * logits[m] for m, w in zip(chosen, weights))
    return Selection(tuple(Path(m) for m in chosen), weights, r_at_1(fused, gt), alone, path, len(gt))
