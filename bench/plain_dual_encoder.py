"""The issue's reference model, outside `tvr`, on the benchmark world: how far a plain dual encoder gets.

Issue 12 measured every `tvr` method against "a plain dual encoder (not tvr)": a small CNN per
frame, a GRU over the frames and audio band energies for the video; frozen MiniLM and an MLP for
the text; symmetric InfoNCE; 40 epochs. This script builds that model from scratch (no pretrained
vision weights) and scores it on the same world, test split and protocol as
`bench/synthetic_methods.py` — the same metric code, ties at their average rank, per tag, the
paraphrase twin — so its row sits beside the `tvr` methods' rows:

    python bench/plain_dual_encoder.py            # → bench/results/plain_dual_encoder.{json,md}

Frames and audio are decoded once through `tvr.io` and cached under `--cache` (an .npz per split,
holding its gallery's keys: a cache of another world is refused). Training sees only the train
split (audio standardised with its statistics) and keeps the epoch with the best validation R@1;
the test split and its paraphrase twin are decoded before training but scored only after it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import METRIC_KEYS, TAGS, fmt
from torch import Tensor, nn

from tvr.atomic import atomic_write_json, atomic_write_text


def decode_split(manifest_path: Path, cache: Path, frames: int, segments: int) -> dict[str, Any]:
    """Captions, gallery, ground truth, frames [V,T,H,W,3] uint8 and log-mel band means [V,S,B] of a split
    (`segments` one-second windows, cut or padded with silence)."""
    from tvr.encoders.audio import AudioConfig, log_mel_statistics
    from tvr.io.decoded import DecodeSpec
    from tvr.io.manifest import read_manifest
    from tvr.io.video import decode

    manifest = read_manifest(manifest_path)
    keys = manifest.video_keys()
    row = {k: i for i, k in enumerate(keys)}
    out: dict[str, Any] = {"entries": manifest.entries, "keys": keys, "gt": [row[e.video_key] for e in manifest.entries]}
    path = cache / f"{manifest_path.stem}-{frames}f-{segments}s.npz"
    if path.is_file():
        with np.load(path) as z:
            if list(z["keys"]) != keys:
                raise SystemExit(f"{path}: decoded from another world than {manifest_path}; remove it or pass --cache")
            return out | {"frames": z["frames"], "audio": z["audio"]}
    config = AudioConfig()
    spec = DecodeSpec(num_frames=frames, audio=True, audio_rate_hz=config.rate_hz)
    first = {e.video_key: e for e in reversed(manifest.entries)}
    video, audio = [], []
    for key in keys:
        clip = decode(manifest.path_of(first[key]), spec)
        video.append(clip.frames)
        audio.append(log_mel_statistics(clip.audio, config)[0][:, : config.n_mels])  # band energies: the mean log-mel
    silence = np.full(config.n_mels, np.log(config.floor), dtype=np.float32)
    audio = [np.concatenate([a[:segments], np.tile(silence, (max(0, segments - len(a)), 1))]) for a in audio]
    arrays = {"frames": np.stack(video), "audio": np.stack(audio).astype(np.float32), "keys": np.array(keys)}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return out | arrays


class VideoTower(nn.Module):
    """Per-frame CNN → GRU over frames, concatenated with an MLP over the audio band energies."""

    def __init__(self, audio_dim: int, dim: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width, 2 * width, 4 * width, 4 * width]
        for a, b in zip(channels, channels[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.gru = nn.GRU(channels[-1], dim, batch_first=True)
        self.audio = nn.Sequential(nn.Linear(audio_dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        """frames [B,T,3,H,W] in [0,1], audio [B, audio_dim] (standardised) → [B, dim]."""
        b, t = frames.shape[:2]
        per_frame = self.cnn(frames.flatten(0, 1)).view(b, t, -1)
        _, last = self.gru(per_frame)
        return self.out(torch.cat([last[-1], self.audio(audio)], dim=-1))


class TextTower(nn.Module):
    """An MLP over frozen MiniLM sentence vectors."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, sentence: Tensor) -> Tensor:
        return self.mlp(sentence)


class DualEncoder(nn.Module):
    def __init__(self, audio_dim: int, text_dim: int, dim: int = 256, width: int = 32) -> None:
        super().__init__()
        self.video = VideoTower(audio_dim, dim, width)
        self.text = TextTower(text_dim, dim)
        self.log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))


def as_inputs(split: dict[str, Any], rows: np.ndarray, audio_stats: tuple[np.ndarray, np.ndarray]) -> tuple[Tensor, Tensor]:
    frames = torch.from_numpy(split["frames"][rows]).permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean, std = audio_stats
    audio = torch.from_numpy(((split["audio"][rows] - mean) / std).reshape(len(rows), -1))
    return frames, audio


@torch.no_grad()
def scores(model: DualEncoder, split: dict[str, Any], text: np.ndarray, audio_stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """[captions, videos] cosine similarities."""
    model.eval()
    videos = [F.normalize(model.video(*as_inputs(split, np.arange(s, min(s + 64, len(split["keys"]))), audio_stats)), dim=-1)
              for s in range(0, len(split["keys"]), 64)]
    texts = F.normalize(model.text(torch.from_numpy(text)), dim=-1)
    return (texts @ torch.cat(videos).T).numpy()


def train(train_split: dict[str, Any], val_split: dict[str, Any], text: dict[str, np.ndarray], epochs: int,
          batch: int, lr: float, seed: int) -> tuple[DualEncoder, list[dict[str, Any]]]:
    """Symmetric InfoNCE over batches of distinct videos (one random caption of each); the best-validation epoch is kept."""
    from tvr.eval.metrics import retrieval_metrics

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    audio = train_split["audio"]
    stats = (audio.mean(axis=0, keepdims=True)[0], audio.std(axis=0, keepdims=True)[0] + 1e-6)
    model = DualEncoder(audio[0].size, text["train"].shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(train_split["keys"]) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    captions_of: dict[int, list[int]] = {}
    for i, v in enumerate(train_split["gt"]):
        captions_of.setdefault(v, []).append(i)
    history, best, best_state = [], -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        t0, c0 = time.monotonic(), time.process_time()
        order = rng.permutation(len(train_split["keys"]))
        losses = []
        for s in range(0, len(order) - batch + 1, batch):
            rows = order[s : s + batch]
            caps = np.array([rng.choice(captions_of[v]) for v in rows])
            v = F.normalize(model.video(*as_inputs(train_split, rows, stats)), dim=-1)
            t = F.normalize(model.text(torch.from_numpy(text["train"][caps])), dim=-1)
            logits = model.log_scale.exp().clamp(max=100) * t @ v.T
            target = torch.arange(len(rows))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        val = retrieval_metrics(scores(model, val_split, text["val"], stats), val_split["gt"])["t2v"]["R@1"]
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_R@1": val,
                        "epoch_s": round(time.monotonic() - t0, 2), "epoch_cpu_s": round(time.process_time() - c0, 2)})
        print(f"epoch {epoch}/{epochs} loss {history[-1]['train_loss']:.4f} val R@1 {val:.1f} "
              f"({history[-1]['epoch_s']} s, {history[-1]['epoch_cpu_s']} CPU-s)", flush=True)
        if val > best:
            best, best_state = val, {k: x.clone() for k, x in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.stats = stats  # type: ignore[attr-defined]
    return model, history


def evaluate(model: DualEncoder, split: dict[str, Any], text: np.ndarray) -> dict[str, Any]:
    from tvr.eval.evaluate import metrics_by_tag
    from tvr.eval.metrics import retrieval_metrics

    qg = scores(model, split, text, model.stats)  # type: ignore[attr-defined]
    report = retrieval_metrics(qg, split["gt"])
    by_tag = {tag: {k: m[k] for k in METRIC_KEYS if k in m} | {"n": m["n_queries"]}
              for tag, m in metrics_by_tag(qg, split["gt"], split["entries"]).items()}
    return {d: {k: report[d][k] for k in METRIC_KEYS} for d in ("t2v", "v2t")} | {"by_tag": by_tag}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/synth-bench-g4/world"))
    ap.add_argument("--cache", type=Path, default=Path("runs/synth-bench-g4/plain-dual-encoder"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--audio-seconds", type=int, default=3, help="one band-energy vector per second, this many")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "plain_dual_encoder.json")
    args = ap.parse_args()
    from tvr.encoders.minilm import MiniLMConfig, MiniLMTextEncoder

    t0, c0 = time.monotonic(), time.process_time()
    splits = {name: decode_split(args.data / f"{name}.jsonl", args.cache, args.frames, args.audio_seconds)
              for name in ("train", "val", "test", "test_paraphrase")}
    decode_s, decode_cpu_s = time.monotonic() - t0, time.process_time() - c0
    minilm = MiniLMTextEncoder(MiniLMConfig())
    text = {name: minilm.encode_text([e.caption for e in s["entries"]]).pooled for name, s in splits.items()}
    model, history = train(splits["train"], splits["val"], text, args.epochs, args.batch, args.lr, args.seed)
    best = max(history, key=lambda h: h["val_R@1"])
    result = evaluate(model, splits["test"], text["test"])
    paraphrase = evaluate(model, splits["test_paraphrase"], text["test_paraphrase"])["t2v"]
    doc = {
        "benchmark": "plain_dual_encoder", "cpu_count": os.cpu_count(), "data": str(args.data),
        "setup": {"frames": args.frames, "audio_seconds": args.audio_seconds,
                  "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                  "size_px": int(splits["train"]["frames"].shape[2])},
        "decode_s": round(decode_s, 1), "decode_cpu_s": round(decode_cpu_s, 1),
        "train_wall_s": round(sum(h["epoch_s"] for h in history), 1),
        "train_cpu_s": round(sum(h["epoch_cpu_s"] for h in history), 1),
        "selected_epoch": best["epoch"], "history": history,
        "n_test_queries": len(splits["test"]["gt"]), "n_test_videos": len(splits["test"]["keys"]),
        "test": result, "paraphrase_t2v": paraphrase,
    }
    atomic_write_json(args.out, doc)
    head = ["t2v R@1", "R@5", "MdR"] + [f"R@1 {t}" for t in TAGS] + ["paraphrase R@1 / R@10", "v2t R@1", "epochs (kept)",
                                                                   "train CPU-s", "train wall s"]
    row = [fmt(result["t2v"][k]) for k in ("R@1", "R@5", "MdR")] + [fmt(result["by_tag"].get(t, {}).get("R@1")) for t in TAGS]
    row += [f"{paraphrase['R@1']:.1f} / {paraphrase['R@10']:.1f}", fmt(result["v2t"]["R@1"]),
            f"{len(history)} ({best['epoch']})", fmt(doc["train_cpu_s"]), fmt(doc["train_wall_s"])]
    table = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| " + " | ".join(row) + " |\n"
    atomic_write_text(args.out.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    main()
