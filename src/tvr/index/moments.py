"""The best-matching moment of a hit: the frame whose similarity to the query is highest.

The moment is that frame's timestamp (seconds from the start of the file); its window reaches half
way to the neighbouring sampled frames, so consecutive windows tile the sampled clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tvr.models.base import RetrievalModel, TextEmb, VideoEmb


@dataclass(frozen=True)
class Moment:
    time_s: float  # timestamp of the best frame
    start_s: float  # window around it (half way to the neighbouring frames)
    end_s: float
    frame: int  # index of the frame among the video's sampled frames
    score: float  # frame-level similarity (cosine scale)

    def to_json(self) -> dict[str, float | int]:
        return {"time_s": self.time_s, "start_s": self.start_s, "end_s": self.end_s,
                "frame": self.frame, "score": self.score}


@torch.no_grad()
def best_moments(model: RetrievalModel, text_emb: TextEmb, videos: VideoEmb) -> list[Moment | None]:
    """The best moment of each of `videos` for the single query `text_emb` (None: no frame times)."""
    sims = model.frame_similarity(text_emb, videos)[0].float()  # [V, T]
    times = videos.timestamps
    mask = videos.frame_mask
    out: list[Moment | None] = []
    for v in range(sims.shape[0]):
        row = sims[v]
        if times is None or row.shape[0] != times.shape[1] or not torch.isfinite(row).any():
            out.append(None)
            continue
        t = int(torch.argmax(row))
        valid = mask[v] if mask is not None else torch.ones_like(row, dtype=torch.bool)
        ts = times[v][valid].double().tolist()
        frame_times = times[v].double().tolist()
        out.append(Moment(frame_times[t], *_window(ts, frame_times[t]), frame=t, score=float(row[t])))
    return out


def _window(valid_times: list[float], t: float) -> tuple[float, float]:
    before = [x for x in valid_times if x < t]
    after = [x for x in valid_times if x > t]
    gaps = [b - a for a, b in zip(valid_times, valid_times[1:]) if b > a]
    half = (min(gaps) / 2) if gaps else 0.0
    start = (t + max(before)) / 2 if before else max(0.0, t - half)
    end = (t + min(after)) / 2 if after else t + half
    return (start if math.isfinite(start) else t), (end if math.isfinite(end) else t)
