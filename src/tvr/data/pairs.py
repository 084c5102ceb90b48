"""Captions paired with the clips they describe, after decoding every clip once into the feature store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvr.data.batch import TextBatch, VideoInputSpec
from tvr.data.clips import Clips
from tvr.data.streams import check_videos_exist, extract_streams, pixels_encoder, store_key
from tvr.errors import TvrError
from tvr.io.manifest import Manifest, ManifestEntry


@dataclass(frozen=True)
class PairSet:
    """Captions and the clip (row of `clips`) each one describes, after dropping failed videos."""

    entries: tuple[ManifestEntry, ...]
    video_rows: np.ndarray  # [n_captions] row in `clips`
    clips: Clips
    skipped: tuple[str, ...]  # store keys that failed to decode

    def __enter__(self) -> PairSet:
        return self

    def __exit__(self, *exc: object) -> None:
        """Closes the clips' frame store: a set too large to preload reads it until here."""
        self.clips.close()

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


def decode_clips(
    manifest: Manifest, spec: VideoInputSpec, store_dir: Path, *, workers: int = 2, progress: bool = True
) -> list[str]:
    """Decode (once; cached in `store_dir`) every clip of `manifest`, its frames and the streams `spec`
    asks for; the store keys of the decodable ones, in manifest order (none decodable is an error)."""
    from tvr.features.extract import extract_features
    from tvr.features.store import FeatureStore

    check_videos_exist(manifest)
    extract_features(manifest, pixels_encoder(spec), store_dir, workers=workers, progress=progress)
    extract_streams(manifest, spec, store_dir, workers=workers, progress=progress)
    keys = list(dict.fromkeys(store_key(manifest, e) for e in manifest.entries))
    with FeatureStore(store_dir) as store:
        gallery = [k for k in keys if store.status(k) == "ok"]
    if not gallery:
        failures = decode_failures(manifest, store_dir)
        example = f"; e.g. {failures[0].video}: {failures[0].error}" if failures else ""
        raise TvrError(f"{manifest.source}: none of its {len(keys)} videos could be decoded{example}")
    return gallery


def load_pairs(
    manifest: Manifest, spec: VideoInputSpec, store_dir: Path, *, workers: int = 2, progress: bool = True
) -> PairSet:
    """Decode every clip of `manifest` (`decode_clips`) and pair captions with the decodable clips."""
    gallery = decode_clips(manifest, spec, store_dir, workers=workers, progress=progress)
    row = {k: i for i, k in enumerate(gallery)}
    keys = [store_key(manifest, e) for e in manifest.entries]
    kept = [(e, row[k]) for e, k in zip(manifest.entries, keys, strict=True) if k in row]
    skipped = tuple(k for k in dict.fromkeys(keys) if k not in row)
    return PairSet(
        tuple(e for e, _ in kept), np.array([r for _, r in kept], dtype=np.int64), Clips(store_dir, gallery, spec), skipped
    )


def text_batch(pairs: PairSet, caption_rows: Sequence[int]) -> TextBatch:
    return TextBatch([pairs.entries[i].caption for i in caption_rows])
