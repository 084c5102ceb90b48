"""Frames and captions for training and evaluation, read through the feature store.

Videos are decoded once: a "pixels" encoder stores the sampled uint8 frames of every clip in a
feature store (resumable, atomic, failures recorded), and batches are cut from it. Caption order is
a pure function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one does.

Models that read precomputed expert streams (`VideoInputSpec.streams`, feature-store encoder names
such as "audio" or "motion", optionally "name:option=value,...") get each stream extracted into its
own store `STORE/streams/<name>` and served padded in `VideoBatch.features`: "<name>" [B, K, D],
"<name>_mask" [B, K] and "<name>_timestamps" [B, K] (seconds; NaN = unknown). A clip whose stream
failed, or that lacks it (e.g. "audio_present" = 0: no audio track), gets an all-False mask, never
an error. The pixels store stays the primary one: it decides which clips are decodable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvr.errors import TvrError
from tvr.io.manifest import Manifest, ManifestEntry
from tvr.models.base import TextBatch, VideoBatch, VideoInputSpec

PRELOAD_LIMIT_BYTES = 2 << 30  # clips smaller than this in total are held in memory
STREAMS_DIR = "streams"  # stream stores live inside the primary (pixels) store's directory


def pixels_encoder(spec: VideoInputSpec):
    """The registered "pixels" encoder (uint8 frames) matching what the model samples."""
    from tvr.encoders.pixels import PixelsConfig, PixelsEncoder

    return PixelsEncoder(PixelsConfig(size=spec.image_size, num_frames=spec.num_frames))


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


def parse_stream(stream: str) -> tuple[str, dict[str, str]]:
    """"name" or "name:opt=value,opt=value" → (encoder name, options as strings)."""
    name, _, rest = stream.partition(":")
    options = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise TvrError(f"stream {stream!r}: expected name:option=value,..., got {part!r}")
        options[key.strip()] = value.strip()
    if not name:
        raise TvrError(f"stream {stream!r}: no encoder name")
    return name, options


def stream_store_dir(store_dir: Path, stream: str) -> Path:
    """Where stream `stream` of the clips cached in `store_dir` is stored."""
    return Path(store_dir) / STREAMS_DIR / parse_stream(stream)[0]


def extract_streams(source: Manifest | Sequence, spec: VideoInputSpec, store_dir: Path, *,
                    workers: int = 2, progress: bool = True) -> None:
    """Extract every stream of `spec` for `source` (a manifest or extraction jobs), resumably."""
    from tvr.encoders.registry import create_video_encoder
    from tvr.features.extract import extract_features

    for stream in spec.streams:
        name, options = parse_stream(stream)
        encoder = create_video_encoder(name, **options)
        extract_features(source, encoder, stream_store_dir(store_dir, stream), workers=workers, progress=progress)


def stream_arrays(stream: str, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(features [K, D], timestamps [K]) of one clip's stored stream; None when the clip lacks it.

    The features are the array named like the encoder ("audio", "motion"), else "frame_cls";
    times are "<name>_timestamps", else "timestamps", else unknown (NaN).
    """
    name = parse_stream(stream)[0]
    present = arrays.get(f"{name}_present")
    if present is not None and not float(np.asarray(present).reshape(-1)[0]) > 0:
        return None
    feats = arrays.get(name, arrays.get("frame_cls"))
    if feats is None:
        raise TvrError(f"stream {name!r}: the stored features have no array {name!r} or 'frame_cls' "
                       f"(found: {', '.join(sorted(arrays))})")
    feats = np.asarray(feats, dtype=np.float32)
    feats = feats[None] if feats.ndim == 1 else feats
    if feats.ndim != 2:
        raise TvrError(f"stream {name!r}: features must be [K, D], got shape {feats.shape}")
    times = arrays.get(f"{name}_timestamps", arrays.get("timestamps"))
    if times is None or len(times) != len(feats):
        times = np.full(len(feats), np.nan, dtype=np.float32)
    if len(feats) == 0:
        return None
    return feats, np.asarray(times, dtype=np.float32)


class _Stream:
    """One expert stream of every clip of a `Clips`, held in memory (streams are small)."""

    def __init__(self, stream: str, store_dir: Path, keys: Sequence[str]) -> None:
        from tvr.features.store import FeatureStore

        self.name = parse_stream(stream)[0]
        self.rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(keys)
        root = stream_store_dir(store_dir, stream)
        self.dim = 0
        if not (root / "store.sqlite").is_file():
            raise TvrError(f"{root}: stream {self.name!r} was never extracted")
        dims: set[int] = set()
        with FeatureStore(root) as store:
            ok = [i for i, k in enumerate(keys) if store.status(k) == "ok"]
            for i, arrays in zip(ok, store.get_many([keys[i] for i in ok]), strict=True):
                self.rows[i] = stream_arrays(stream, arrays)
                raw = arrays.get(self.name, arrays.get("frame_cls"))
                if raw is not None and np.ndim(raw) == 2:
                    dims.add(int(np.shape(raw)[1]))  # absent streams (no audio track) still tell the width
        if len(dims) > 1:
            raise TvrError(f"{root}: stream {self.name!r} has features of several widths {sorted(dims)}")
        self.dim = dims.pop() if dims else 0

    def batch(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Padded features, mask and timestamps of `rows` (at least one position, all masked if absent)."""
        k = max([1] + [len(self.rows[r][0]) for r in rows if self.rows[r] is not None])
        feats = np.zeros((len(rows), k, self.dim), dtype=np.float32)
        mask = np.zeros((len(rows), k), dtype=bool)
        times = np.zeros((len(rows), k), dtype=np.float32)
        for j, r in enumerate(rows):
            item = self.rows[r]
            if item is None:
                continue
            n = len(item[0])
            feats[j, :n], mask[j, :n], times[j, :n] = item[0], True, item[1]
        return {self.name: torch.from_numpy(feats), f"{self.name}_mask": torch.from_numpy(mask),
                f"{self.name}_timestamps": torch.from_numpy(times)}


class Clips:
    """Sampled frames (and expert streams) of a set of clips, padded to T frames, served as `VideoBatch`es."""

    def __init__(self, store_dir: Path, keys: Sequence[str], spec: VideoInputSpec) -> None:
        from tvr.features.store import FeatureStore

        self.keys = list(keys)
        self.spec = spec
        self._store = FeatureStore(store_dir)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._streams = [_Stream(s, store_dir, self.keys) for s in spec.streams]
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
        features: dict[str, torch.Tensor] = {}
        for stream in self._streams:
            features.update(stream.batch(rows))
        return VideoBatch(
            frames=torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3) if self.spec.pixels else None,
            frame_mask=torch.from_numpy(mask),
            timestamps=torch.from_numpy(times),
            features=features,
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


@dataclass(frozen=True)
class DecodeFailure:
    """A manifest video (its manifest spelling) that was left out, and why."""

    video: str
    key: str  # feature-store key
    error: str


def decode_failures(manifest: Manifest, store_dir: Path) -> list[DecodeFailure]:
    """The manifest's distinct clips that the store at `store_dir` records as failed, with the store's error."""
    from tvr.features.store import FeatureStore

    if not (Path(store_dir) / "store.sqlite").is_file():
        return []
    clips = {store_key(manifest, e): e.video_key for e in manifest.entries}
    out = []
    with FeatureStore(store_dir) as store:
        for key, video in clips.items():
            row = store.entry(key)
            if row is None or row.status != "failed":
                continue
            # the store spells the absolute path; the message names the manifest's spelling instead
            error = (row.error or "decode failed").removeprefix(f"cannot decode {row.path}: ")
            out.append(DecodeFailure(video, key, error))
    return out


def load_pairs(
    manifest: Manifest, spec: VideoInputSpec, store_dir: Path, *, workers: int = 2, progress: bool = True
) -> PairSet:
    """Decode (once; cached in `store_dir`) every clip of `manifest` and pair captions with clips."""
    from tvr.features.extract import extract_features
    from tvr.features.store import FeatureStore

    check_videos_exist(manifest)
    extract_features(manifest, pixels_encoder(spec), store_dir, workers=workers, progress=progress)
    extract_streams(manifest, spec, store_dir, workers=workers, progress=progress)
    keys = [store_key(manifest, e) for e in manifest.entries]
    with FeatureStore(store_dir) as store:
        ok = {k for k in dict.fromkeys(keys) if store.status(k) == "ok"}
    gallery = [k for k in dict.fromkeys(keys) if k in ok]
    if not gallery:
        failures = decode_failures(manifest, store_dir)
        example = f"; e.g. {failures[0].video}: {failures[0].error}" if failures else ""
        raise TvrError(f"{manifest.source}: none of its {len(dict.fromkeys(keys))} videos could be decoded{example}")
    row = {k: i for i, k in enumerate(gallery)}
    kept = [(e, row[k]) for e, k in zip(manifest.entries, keys, strict=True) if k in row]
    skipped = tuple(k for k in dict.fromkeys(keys) if k not in ok)
    return PairSet(
        tuple(e for e, _ in kept), np.array([r for _, r in kept], dtype=np.int64), Clips(store_dir, gallery, spec), skipped
    )


def epoch_picks(pairs: PairSet, seed: int, epoch: int) -> tuple[np.random.Generator, list[tuple[int, int]]]:
    """(the epoch's generator, (caption index, clip row) per clip in a random order, one random caption
    each). The generator is returned so a sampler can keep drawing from the same stream."""
    rng = np.random.default_rng([seed, epoch])
    by_video = pairs.captions_of_video()
    order = rng.permutation(len(by_video))
    return rng, [(by_video[v][int(rng.integers(len(by_video[v])))], int(v)) for v in order if by_video[v]]


def chunk_batches(picks: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[list[int], list[int]]]:
    """Consecutive batches of `picks` as (caption indices, clip rows); a final batch under 2 is dropped."""
    out = []
    for i in range(0, len(picks), batch_size):
        chunk = picks[i : i + batch_size]
        if len(chunk) >= 2:
            out.append(([c for c, _ in chunk], [v for _, v in chunk]))
    return out


def epoch_batches(pairs: PairSet, batch_size: int, seed: int, epoch: int) -> list[tuple[list[int], list[int]]]:
    """(caption indices, clip rows) per batch: every clip once per epoch with one random caption of it.

    One caption per clip keeps two captions of the same video out of one batch (no false negatives
    in InfoNCE). A final batch smaller than 2 is dropped (InfoNCE needs negatives).
    """
    return chunk_batches(epoch_picks(pairs, seed, epoch)[1], batch_size)


def text_batch(pairs: PairSet, caption_rows: Sequence[int]) -> TextBatch:
    return TextBatch([pairs.entries[i].caption for i in caption_rows])
