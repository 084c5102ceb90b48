"""Hard negatives from the data itself: batches that hold captions which are near neighbours.

A random batch of 64 out of a thousand videos almost never holds the near-duplicate a mechanism
exists to tell apart (the same objects in the other order, the same scene with another sound), so
InfoNCE never asks the model for that contrast. `neighbour_batches` builds part of every batch from
small groups of clips whose captions share the most words (TF-IDF cosine over word unigrams and
bigrams). That needs nothing but the training captions, so it works on any dataset, and it sees
only the `PairSet` it is given: the trainer passes the training split, never validation or test.

Two clips whose chosen captions are the same text are never put in one batch: neither caption
could tell its video from the other, so InfoNCE would push apart a true match.
"""

from __future__ import annotations

import re
from collections import Counter, deque

import numpy as np

from tvr.data.pairs import PairSet
from tvr.data.sampling import chunk_batches, epoch_picks

_WORD = re.compile(r"[a-z0-9]+")


def caption_vectors(captions: list[str]) -> np.ndarray:
    """[N, F] L2-normalised TF-IDF vectors over word unigrams and bigrams (dense: N is a training set)."""
    docs = []
    for text in captions:
        words = _WORD.findall(text.lower())
        docs.append(Counter(words + [f"{a} {b}" for a, b in zip(words, words[1:])]))
    vocab = {t: i for i, t in enumerate(sorted({t for d in docs for t in d}))}
    df = np.zeros(len(vocab))
    for d in docs:
        for t in d:
            df[vocab[t]] += 1
    idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
    out = np.zeros((len(docs), len(vocab)), dtype=np.float32)
    for i, d in enumerate(docs):
        for t, n in d.items():
            out[i, vocab[t]] = n * idf[vocab[t]]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def neighbour_batches(
    pairs: PairSet, batch_size: int, seed: int, epoch: int, *, share: float, group: int = 4
) -> list[tuple[list[int], list[int]]]:
    """(caption indices, clip rows) per batch, every clip once per epoch with one random caption of it.

    About `share` of each batch is groups of `group` clips whose chosen captions are nearest
    neighbours (listed first in the batch); the rest are drawn at random. share=0 gives the same
    batches as `epoch_batches`.
    Deterministic for (seed, epoch); a final batch smaller than 2 is dropped.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    if group < 2:
        raise ValueError(f"group must be >= 2, got {group}")
    rng, picks = epoch_picks(pairs, seed, epoch)
    if share == 0.0 or len(picks) < 2:
        return chunk_batches(picks, batch_size)
    texts = [pairs.entries[c].caption for c, _ in picks]
    vectors = caption_vectors(texts)
    sim = vectors @ vectors.T
    norm = [t.strip().lower() for t in texts]
    free = np.ones(len(picks), dtype=bool)
    groups: list[list[int]] = []
    n_grouped, grouped = int(round(share * len(picks))), 0
    for anchor in range(len(picks)):  # anchors in the epoch's random order
        if grouped >= n_grouped:
            break
        if not free[anchor]:
            continue
        free[anchor] = False
        members = [anchor]
        for j in np.argsort(-sim[anchor], kind="stable"):
            if len(members) == group:
                break
            if free[j] and all(norm[j] != norm[m] for m in members):
                members.append(int(j))
                free[j] = False
        groups.append(members)
        grouped += len(members)
    per_batch = max(1, int(round(share * batch_size)) // group)  # neighbour groups per batch
    batches = _fill(deque(groups), deque(i for i in range(len(picks)) if free[i]), norm, batch_size, per_batch)
    out = [[picks[i] for i in b] for b in batches]
    rng.shuffle(out)  # type: ignore[arg-type]
    return [([c for c, _ in b], [v for _, v in b]) for b in out]


def _fill(groups: deque[list[int]], rest: deque[int], norm: list[str], batch_size: int, per_batch: int) -> list[list[int]]:
    """Batches of `per_batch` groups topped up from `rest`, never two identical captions in one batch.
    Whatever does not fit waits for a later batch; every batch makes progress (an empty one fits all)."""
    batches: list[list[int]] = []
    while groups or rest:
        batch: list[int] = []
        texts: set[str] = set()

        def take(members: list[int]) -> bool:
            if len(batch) + len(members) > batch_size or any(norm[m] in texts for m in members):
                return False
            batch.extend(members)
            texts.update(norm[m] for m in members)
            return True

        taken = 0
        for _ in range(len(groups)):
            if taken == per_batch:
                break
            members = groups.popleft()
            if take(members):
                taken += 1
            else:
                groups.append(members)
        for _ in range(len(rest)):
            if len(batch) >= batch_size:
                break
            i = rest.popleft()
            if not take([i]):
                rest.append(i)
        if len(batch) >= 2:
            batches.append(batch)
    return batches

