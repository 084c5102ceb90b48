"""`Clips`: the sampled frames (and expert streams) of a set of clips, served as padded `VideoBatch`es."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tvr.data.batch import VideoBatch, VideoInputSpec
from tvr.data.streams import StreamRows
from tvr.errors import TvrError

PRELOAD_LIMIT_BYTES = 2 << 30  # clips smaller than this in total are held in memory


def padded_frames(arrays: Sequence[dict[str, np.ndarray]], spec: VideoInputSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored "frames"/"timestamps" of clips padded to T: (frames [N, T, S, S, 3] uint8, mask [N, T], times [N, T])."""
    t, s = spec.num_frames, spec.image_size
    frames = np.zeros((len(arrays), t, s, s, 3), dtype=np.uint8)
    mask = np.zeros((len(arrays), t), dtype=bool)
    times = np.zeros((len(arrays), t), dtype=np.float32)
    for i, a in enumerate(arrays):
        f = a["frames"][:t]
        n = f.shape[0]
        frames[i, :n], mask[i, :n], times[i, :n] = f, True, a["timestamps"][:n]
    return frames, mask, times


def video_batch(frames: np.ndarray, mask: np.ndarray, times: np.ndarray, spec: VideoInputSpec, keys: list[str],
                features: dict[str, torch.Tensor] | None = None) -> VideoBatch:
    """A `VideoBatch` of padded frames (channels first, as models take them; none when the model reads only streams)."""
    return VideoBatch(
        frames=torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3) if spec.pixels else None,
        frame_mask=torch.from_numpy(mask),
        timestamps=torch.from_numpy(times),
        features=features or {},
        keys=keys,
    )


class Clips:
    """Sampled frames (and expert streams) of a set of clips, padded to T frames, served as `VideoBatch`es."""

    def __init__(self, store_dir: Path, keys: Sequence[str], spec: VideoInputSpec) -> None:
        from tvr.features.store import FeatureStore

        self.keys = list(keys)
        self.spec = spec
        self._store: FeatureStore | None = FeatureStore(store_dir)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._streams = [StreamRows(s, store_dir, self.keys) for s in spec.streams]
        t, s = spec.num_frames, spec.image_size
        self._preloaded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if len(self.keys) * t * s * s * 3 <= PRELOAD_LIMIT_BYTES:
            self._preloaded = padded_frames(self._store.get_many(self.keys), spec)
            self.close()  # everything is in memory: no connection left open for the garbage collector to close

    def __len__(self) -> int:
        return len(self.keys)

    def batch(self, rows: Sequence[int]) -> VideoBatch:
        rows = list(rows)
        if self._preloaded is not None:
            frames, mask, times = (a[rows] for a in self._preloaded)
        elif self._store is None:
            raise TvrError("these clips were closed; load them again to read frames")
        else:
            frames, mask, times = padded_frames(self._store.get_many([self.keys[r] for r in rows]), self.spec)
        features: dict[str, torch.Tensor] = {}
        for stream in self._streams:
            features.update(stream.batch(rows))
        return video_batch(frames, mask, times, self.spec, [self.keys[r] for r in rows], features)

    def close(self) -> None:
        """Close the frame store (idempotent; a preloaded set closed it already)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Clips:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
