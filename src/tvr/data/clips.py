"""`Clips`: the sampled frames (and expert streams) of a set of clips, served as padded `VideoBatch`es."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tvr.data.batch import VideoBatch, VideoInputSpec
from tvr.data.streams import StreamRows

PRELOAD_LIMIT_BYTES = 2 << 30  # clips smaller than this in total are held in memory


class Clips:
    """Sampled frames (and expert streams) of a set of clips, padded to T frames, served as `VideoBatch`es."""

    def __init__(self, store_dir: Path, keys: Sequence[str], spec: VideoInputSpec) -> None:
        from tvr.features.store import FeatureStore

        self.keys = list(keys)
        self.spec = spec
        self._store = FeatureStore(store_dir)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._streams = [StreamRows(s, store_dir, self.keys) for s in spec.streams]
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
