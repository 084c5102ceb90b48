"""Which captions and clips form each training batch of an epoch.

Caption order is a pure function of (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tvr.data.pairs import PairSet


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
