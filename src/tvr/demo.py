"""The offline main job: synthetic collection → trained model → index → searches → test metrics.

With `zero_shot`, no model is trained: the demo's synthetic CLIP backbone (a Hugging Face
`CLIPModel` folder, standing in for the checkpoint a practitioner has) indexes the test videos as
CLIP4Clip-meanP, exactly as `tvr index VIDEOS --model FOLDER` does.

Every stage reuses what an earlier (possibly interrupted) run left in the output folder: the world
is generated once, training resumes from its last epoch, the index is rebuilt from the cached
frames. So `tvr demo` can be re-run cheaply, and each stage is the same code the CLI commands use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tvr.atomic import atomic_write_json
from tvr.errors import TvrError

# The default CPU recipe at a smaller size: a backbone pretrained for fewer steps (its own cache
# folder) and without the dense distillation (with it, its teacher built for as few steps, the first
# run took twice as long for no gain that 70 test captions show: bench/results/demo_recipes.json),
# smaller batches (a few hundred videos give too few steps at batch 64), and for a method that
# starts from itself pretrained on synthetic videos (MMT, seqTransf, TS2-Net, ProST), 400 of them
# for 3 epochs.
DEMO_PRETRAIN_STEPS = 150


def demo_train_config(pretrain_steps: int) -> dict[str, Any]:
    return {
        "preset": "cpu-small",
        "pretrain": {"steps": pretrain_steps, "batch_size": 128, "warmup_steps": max(1, pretrain_steps // 10),
                     "distill": 0.0},
        "train": {"batch_size": 32, "init_videos": 400, "init_epochs": 3},
    }


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("demo-out")
    videos: int = 300  # synthetic videos in the collection (80 % train / 10 % val / 10 % test)
    seed: int = 0
    method: str = "clip4clip-meanp"
    epochs: int = 10
    config_file: Path | None = None  # a `tvr train --config` file; None: demo_train_config(pretrain_steps)
    pretrain_steps: int = DEMO_PRETRAIN_STEPS  # of the demo's synthetic backbone (the default one takes 1200)
    checkpoint: Path | None = None  # skip training and use this run directory
    zero_shot: bool = False  # skip training: index with the pretrained backbone as it is
    examples: int = 5  # example searches to show
    top_k: int = 5
    workers: int = 2


@dataclass(frozen=True)
class ExampleSearch:
    query: str
    expected: str
    tags: list[str]
    hits: list[dict[str, Any]]

    @property
    def found_rank(self) -> int | None:
        return next((h["rank"] for h in self.hits if h["video"] == self.expected), None)


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every stage; returns the demo report (timings, example searches, test metrics)."""
    from tvr.data.pairs import load_pairs
    from tvr.eval.evaluate import evaluate_model
    from tvr.index.build import BuildOptions, build_index
    from tvr.index.search import Searcher
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model
    from tvr.models.zero_shot import ZeroShotSpec, zero_shot_model
    from tvr.train.trainer import FRAMES_DIR

    if cfg.videos < 50:
        raise TvrError(f"--videos must be at least 50 for a meaningful test split, got {cfg.videos}")
    if cfg.zero_shot and cfg.checkpoint is not None:
        raise TvrError("--zero-shot indexes with the pretrained backbone; it takes no --checkpoint")
    timings: dict[str, float] = {}
    world = cfg.out / "world"

    t = time.monotonic()
    log(f"[1/5] synthetic collection: {cfg.videos} videos → {world}")
    _ensure_world(world, cfg.videos, cfg.seed, cfg.workers)
    timings["synth_s"] = time.monotonic() - t

    t = time.monotonic()
    run = cfg.checkpoint or cfg.out / "run"
    zero_shot = None
    if cfg.zero_shot:
        log("[2/5] model: the demo's synthetic CLIP backbone, zero-shot (no training)")
        zero_shot = ZeroShotSpec(str(_ensure_backbone(cfg)))
        run = Path(zero_shot.model)
    elif cfg.checkpoint is None:
        log(f"[2/5] model: {cfg.method} → {run}")
        _ensure_trained(world / "train.jsonl", cfg, run)
    else:
        log(f"[2/5] model: using {run}")
    timings["train_s"] = time.monotonic() - t

    t = time.monotonic()
    index_dir = cfg.out / ("index-zero-shot" if cfg.zero_shot else "index")
    log(f"[3/5] index of the test videos → {index_dir}")
    build_index(world / "test.jsonl", zero_shot or run, index_dir,
                BuildOptions(querybank=world / "train.jsonl", workers=cfg.workers, force=True, progress=False))
    timings["index_s"] = time.monotonic() - t

    t = time.monotonic()
    log("[4/5] searches")
    test = read_manifest(world / "test.jsonl")
    searcher = Searcher.open(index_dir)
    try:
        captions = [e.caption for e in test.entries]
        results = searcher.search(captions, k=cfg.top_k)
        expected = [e.video_key for e in test.entries]
        found = [any(h.item.name == want for h in hits) for hits, want in zip(results, expected, strict=True)]
        picks = _pick_examples(test.entries, cfg.examples)
        examples = [
            ExampleSearch(captions[i], expected[i], list(test.entries[i].extra.get("tags", [])),
                          [h.to_json() for h in results[i]])
            for i in picks
        ]
    finally:
        searcher.close()
    timings["search_s"] = time.monotonic() - t

    t = time.monotonic()
    log("[5/5] test metrics")
    model = zero_shot_model(zero_shot) if zero_shot else load_model(run)
    store = index_dir / FRAMES_DIR if zero_shot else run / FRAMES_DIR  # the frames the index decoded
    pairs = load_pairs(test, model.input_spec(), store, workers=cfg.workers, progress=False)
    bank = [e.caption for e in read_manifest(world / "train.jsonl").entries]
    metrics = {p: evaluate_model(model, pairs, postproc=p, querybank_texts=bank, split="test") for p in ("none", "is")}
    timings["eval_s"] = time.monotonic() - t

    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "run_dir": None if zero_shot else str(run), "zero_shot_model": str(run) if zero_shot else None,
        "index_dir": str(index_dir),
        "search_top_k_hit_rate": 100.0 * sum(found) / len(found), "n_search_queries": len(found),
        "examples": [{**asdict(e), "found_rank": e.found_rank} for e in examples],
        "metrics": metrics, "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def _ensure_world(world: Path, videos: int, seed: int, workers: int) -> None:
    from tvr.synth.generate import RenderConfig, generate
    from tvr.synth.world import WorldConfig

    if (world / "test.jsonl").is_file():  # manifests are written last: their presence means complete
        return
    generate(world, WorldConfig(videos=videos, seed=seed), RenderConfig(), workers=workers, force=True)


def _demo_config_file(cfg: DemoConfig) -> Path:
    if cfg.config_file is not None:
        return cfg.config_file
    path = cfg.out / "demo-train-config.json"
    atomic_write_json(path, demo_train_config(cfg.pretrain_steps))
    return path


def _ensure_backbone(cfg: DemoConfig) -> Path:
    """The synthetic backbone the demo's training would start from (built once per machine, cached)."""
    from tvr.train.presets import resolve
    from tvr.train.pretrain import ensure_backbone

    cfg.out.mkdir(parents=True, exist_ok=True)
    pretrain = resolve(_demo_config_file(cfg), cfg.method).pretrain
    return ensure_backbone(pretrain, progress=True).path


def _ensure_trained(manifest: Path, cfg: DemoConfig, run: Path) -> None:
    from tvr.train.checkpoint import has_checkpoint, read_trainer_state
    from tvr.train.trainer import train

    resume = has_checkpoint(run)
    if resume and int(read_trainer_state(run)["epoch"]) >= cfg.epochs:
        return
    train(manifest, cfg.method, run, config_file=_demo_config_file(cfg), epochs=cfg.epochs, resume=resume,
          seed=None if resume else cfg.seed, progress=True)


def _pick_examples(entries: tuple, n: int) -> list[int]:
    """One caption per distinct tag set first (order, sound, small, …), then the rest in order."""
    seen: set[tuple[str, ...]] = set()
    firsts, rest = [], []
    for i, e in enumerate(entries):
        key = tuple(sorted(e.extra.get("tags", [])))
        (rest if key in seen else firsts).append(i)
        seen.add(key)
    return (firsts + rest)[:n]
