"""A small synthetic evaluation input with a planted hub, for the README and the tests.

Captions are noisy copies of their video's embedding; one video is pushed towards every caption
(a hub). IS with a querybank drawn the same way should take the hub down and lift R@1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.atomic import atomic_open, atomic_write_text
from tvr.errors import TvrError


@dataclass(frozen=True)
class ExampleConfig:
    n_videos: int = 1000
    n_querybank: int = 5000
    dim: int = 64
    noise: float = 2.5  # caption = video + noise·N(0, I/dim), then L2-normalised
    hub_bonus: float = 0.4  # added to the hub's cosine for every caption and querybank query
    seed: int = 0


@dataclass(frozen=True)
class Example:
    scores_qg: np.ndarray  # [n_videos, n_videos] cosine scores, caption i ↔ video i
    gt: list[int]
    querybank_bg: np.ndarray  # [n_querybank, n_videos]
    hub: int


def make_example(config: ExampleConfig = ExampleConfig()) -> Example:
    """Deterministic (seeded) scores, ground truth and querybank with one planted hub column."""
    rng = np.random.default_rng(config.seed)
    videos = _unit(rng.standard_normal((config.n_videos, config.dim)))

    def captions(targets: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((targets.size, config.dim)) * config.noise / np.sqrt(config.dim)
        return _unit(videos[targets] + noise)

    hub = int(rng.integers(config.n_videos))
    scores = captions(np.arange(config.n_videos)) @ videos.T
    bank = captions(rng.integers(config.n_videos, size=config.n_querybank)) @ videos.T
    scores[:, hub] += config.hub_bonus
    bank[:, hub] += config.hub_bonus
    return Example(scores.astype(np.float32), list(range(config.n_videos)), bank.astype(np.float32), hub)


def write_example(out_dir: str | Path, config: ExampleConfig = ExampleConfig(), force: bool = False) -> dict[str, Path]:
    """Write scores.npy, gt.json and querybank.npy into `out_dir` (atomically); returns their paths.
    An existing file of those names is only replaced with `force`."""
    out = Path(out_dir)
    paths = {"scores": out / "scores.npy", "gt": out / "gt.json", "querybank": out / "querybank.npy"}
    if out.exists() and not out.is_dir():
        raise TvrError(f"{out}: exists and is not a directory")
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise TvrError(f"{existing[0]}: already exists (use --force to overwrite it)")
    ex = make_example(config)
    for key, arr in (("scores", ex.scores_qg), ("querybank", ex.querybank_bg)):
        with atomic_open(paths[key], "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    atomic_write_text(paths["gt"], json.dumps(ex.gt) + "\n")
    return paths


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
