"""Frames and captions for training and evaluation, read through the feature store.

Videos are decoded once: a "pixels" encoder stores the sampled uint8 frames of every clip in a
feature store (resumable, atomic, failures recorded), and batches are cut from it. Caption order is
a pure function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvr.encoders.base import VideoEncoder
from tvr.errors import TvrError
from tvr.io.decoded import DecodedVideo, DecodeSpec
from tvr.io.manifest import Manifest, ManifestEntry
from tvr.models.base import TextBatch, VideoBatch, VideoInputSpec

PRELOAD_LIMIT_BYTES = 2 << 30  # clips smaller than this in total are held in memory


class PixelsEncoder(VideoEncoder):
    """Stores the sampled frames themselves (uint8), so training decodes each video only once."""

    name = "pixels"

    def __init__(self, num_frames: int, size: int) -> None:
        self.num_frames = num_frames
        self.size = size

    @property
    def version(self) -> str:
        return f"uint8-T{self.num_frames}-{self.size}px-v1"

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(num_frames=self.num_frames, size=self.size)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        return [
            {"frames": np.ascontiguousarray(v.frames, dtype=np.uint8), "timestamps": v.timestamps_s.astype(np.float32)}
            for v in videos
        ]


def store_key(manifest: Manifest, entry: ManifestEntry) -> str:
    """The feature-store key of an entry's clip (absolute path + clip bounds)."""
    from tvr.features.store import clip_key

    return clip_key(manifest.path_of(entry), entry.start, entry.end)


def check_videos_exist(manifest: Manifest) -> None:
    """A missing video file is a user mistake: name it (and the manifest) before any work starts."""
    seen: set[Path] = set()
    for e in manifest.entries:
        p = manifest.path_of(e)
        if p in seen:
            continue
        seen.add(p)
        if not p.is_file():
            where = f"{manifest.source}: " if manifest.source else ""
            raise TvrError(f"{where}video file not found: {p}")


class Clips:
    """Sampled frames of a set of clips, padded to T frames, served as `VideoBatch`es."""

    def __init__(self, store_dir: Path, keys: Sequence[str], spec: VideoInputSpec) -> None:
        from tvr.features.store import FeatureStore

        self.keys = list(keys)
        self.spec = spec
        self._store = FeatureStore(store_dir)
        self._index = {k: i for i, k in enumerate(self.keys)}
        t, s = spec.num_frames, spec.image_size
        self._frames: np.ndarray | None = None
        if len(self.keys) * t * s * s * 3 <= PRELOAD_LIMIT_BYTES:
            self._frames = np.zeros((len(self.keys), t, s, s, 3), dtype=np.uint8)
            self._mask = np.zeros((len(self.keys), t), dtype=bool)
            self._times = np.zeros((len(self.keys), t), dtype=np.float32)
            for i, arrays in enumerate(self._store.get_many(self.keys)):
                self._fill(i, arrays, self._frames, self._mask, self._times)

    def __len__(self) -> int:
        return len(self.keys)

    def _fill(self, i: int, arrays: dict[str, np.ndarray], frames: np.ndarray, mask: np.ndarray, times: np.ndarray) -> None:
        f = arrays["frames"][: self.spec.num_frames]
        n = f.shape[0]
        frames[i, :n] = f
        mask[i, :n] = True
        times[i, :n] = arrays["timestamps"][:n]

    def batch(self, rows: Sequence[int]) -> VideoBatch:
        rows = list(rows)
        if self._frames is not None:
            frames, mask, times = self._frames[rows], self._mask[rows], self._times[rows]
        else:
            t, s = self.spec.num_frames, self.spec.image_size
            frames = np.zeros((len(rows), t, s, s, 3), dtype=np.uint8)
            mask = np.zeros((len(rows), t), dtype=bool)
            times = np.zeros((len(rows), t), dtype=np.float32)
            for j, arrays in enumerate(self._store.get_many([self.keys[r] for r in rows])):
                self._fill(j, arrays, frames, mask, times)
        return VideoBatch(
            frames=torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3),  # [B, T, 3, H, W]
            frame_mask=torch.from_numpy(mask),
            timestamps=torch.from_numpy(times),
            keys=[self.keys[r] for r in rows],
        )

    def close(self) -> None:
        self._store.close()


@dataclass(frozen=True)
class PairSet:
    """Captions and the clip (row of `clips`) each one describes, after dropping failed videos."""

    entries: tuple[ManifestEntry, ...]
    video_rows: np.ndarray  # [n_captions] row in `clips`
    clips: Clips
    skipped: tuple[str, ...]  # store keys that failed to decode

    def captions_of_video(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(len(self.clips))]
        for i, r in enumerate(self.video_rows):
            out[int(r)].append(i)
        return out


def load_pairs(
    manifest: Manifest, spec: VideoInputSpec, store_dir: Path, *, workers: int = 2, progress: bool = True
) -> PairSet:
    """Decode (once; cached in `store_dir`) every clip of `manifest` and pair captions with clips."""
    from tvr.features.extract import extract_features
    from tvr.features.store import FeatureStore

    check_videos_exist(manifest)
    extract_features(manifest, PixelsEncoder(spec.num_frames, spec.image_size), store_dir, workers=workers, progress=progress)
    keys = [store_key(manifest, e) for e in manifest.entries]
    with FeatureStore(store_dir) as store:
        ok = {k for k in dict.fromkeys(keys) if store.status(k) == "ok"}
    gallery = [k for k in dict.fromkeys(keys) if k in ok]
    if not gallery:
        raise TvrError(f"{manifest.source}: none of its videos could be decoded")
    row = {k: i for i, k in enumerate(gallery)}
    kept = [(e, row[k]) for e, k in zip(manifest.entries, keys, strict=True) if k in row]
    skipped = tuple(k for k in dict.fromkeys(keys) if k not in ok)
    return PairSet(
        tuple(e for e, _ in kept), np.array([r for _, r in kept], dtype=np.int64), Clips(store_dir, gallery, spec), skipped
    )


def epoch_batches(pairs: PairSet, batch_size: int, seed: int, epoch: int) -> list[tuple[list[int], list[int]]]:
    """(caption indices, clip rows) per batch: every clip once per epoch with one random caption of it.

    One caption per clip keeps two captions of the same video out of one batch (no false negatives
    in InfoNCE). A final batch smaller than 2 is dropped (InfoNCE needs negatives).
    """
    rng = np.random.default_rng([seed, epoch])
    by_video = pairs.captions_of_video()
    order = rng.permutation(len(by_video))
    picks = [(by_video[v][int(rng.integers(len(by_video[v])))], int(v)) for v in order if by_video[v]]
    out = []
    for i in range(0, len(picks), batch_size):
        chunk = picks[i : i + batch_size]
        if len(chunk) >= 2:
            out.append(([c for c, _ in chunk], [v for _, v in chunk]))
    return out


def text_batch(pairs: PairSet, caption_rows: Sequence[int]) -> TextBatch:
    return TextBatch([pairs.entries[i].caption for i in caption_rows])
