"""Decoded frames and expert streams in the feature store: which store holds which stream of a clip.

Videos are decoded once: a "pixels" encoder stores the sampled uint8 frames of every clip in a
feature store (resumable, atomic, failures recorded), and batches are cut from it.

Models that read precomputed expert streams (`VideoInputSpec.streams`, feature-store encoder names
such as "audio" or "motion", optionally "name:option=value,...") get each stream extracted into its
own store (`stream_store_dir`) and served padded in `VideoBatch.features` under the stream as the
model names it: "<stream>" [B, K, D], "<stream>_mask" [B, K] and "<stream>_timestamps" [B, K]
(seconds; NaN = unknown). One encoder read with two option sets (two `objects` networks, say) is two
streams: two stores and two batch entries, so models fused in one ensemble each get their own. A
clip whose stream failed, or that lacks it (e.g. "audio_present" = 0: no audio track), gets an
all-False mask, never an error. The pixels store stays the primary one: it decides which clips are
decodable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tvr.data.batch import VideoInputSpec
from tvr.errors import TvrError
from tvr.io.manifest import Manifest, ManifestEntry

STREAMS_DIR = "streams"  # stream stores live inside the primary (pixels) store's directory


def pixels_encoder(spec: VideoInputSpec):
    """The registered "pixels" encoder (uint8 frames) matching what the model samples."""
    from tvr.encoders.pixels import PixelsConfig, PixelsEncoder

    if spec.fps:
        return PixelsEncoder(PixelsConfig(size=spec.image_size, fps=spec.fps, max_frames=spec.num_frames))
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
    """Where stream `stream` of the clips cached in `store_dir` is stored: `streams/<name>` without
    options, `streams/<name>-<10 hex digits of its sorted options>` with them."""
    name, options = parse_stream(stream)
    if not options:
        return Path(store_dir) / STREAMS_DIR / name
    canonical = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return Path(store_dir) / STREAMS_DIR / f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


def extract_streams(source: Manifest | Sequence, spec: VideoInputSpec, store_dir: Path, *,
                    workers: int = 2, progress: bool = True, ray: str | None = None) -> None:
    """Extract every stream of `spec` for `source` (a manifest or extraction jobs), resumably."""
    from tvr.encoders.registry import create_video_encoder
    from tvr.features.extract import extract_features

    for stream in spec.streams:
        name, options = parse_stream(stream)
        encoder = create_video_encoder(name, **options)
        extract_features(source, encoder, stream_store_dir(store_dir, stream), workers=workers, progress=progress, ray=ray)


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


class StreamRows:
    """One expert stream of every clip of a `Clips`, held in memory (streams are small); its batch
    entries are named by the stream as given (`VideoInputSpec.streams`), options included."""

    def __init__(self, stream: str, store_dir: Path, keys: Sequence[str]) -> None:
        from tvr.features.store import FeatureStore

        self.stream = stream
        self.name = parse_stream(stream)[0]
        self.rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(keys)
        root = stream_store_dir(store_dir, stream)
        self.dim = 0
        if not (root / "store.sqlite").is_file():
            raise TvrError(f"{root}: stream {self.stream!r} was never extracted")
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
        return {self.stream: torch.from_numpy(feats), f"{self.stream}_mask": torch.from_numpy(mask),
                f"{self.stream}_timestamps": torch.from_numpy(times)}
