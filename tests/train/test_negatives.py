"""Hard-negative batches: deterministic, every clip once, neighbours together, no identical captions."""

from __future__ import annotations

import numpy as np
import pytest

from tvr.data.pairs import PairSet
from tvr.data.sampling import epoch_batches
from tvr.io.manifest import ManifestEntry
from tvr.train.negatives import caption_vectors, neighbour_batches

COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")
SHAPES = ("circle", "square", "triangle", "cross")
MOTIONS = ("left", "right", "up", "down")


def pair_set(n_videos: int = 96, captions_per_video: int = 2) -> PairSet:
    rng = np.random.default_rng(0)
    entries, rows = [], []
    for v in range(n_videos):
        c, s, m = COLOURS[v % 6], SHAPES[(v // 6) % 4], MOTIONS[(v // 24) % 4]
        for k in range(captions_per_video):
            extra = " quickly" if k else ""
            entries.append(ManifestEntry(f"v{v}.mp4", f"a {c} {s} moves {m}{extra} {int(rng.integers(3))}", split="train"))
            rows.append(v)
    # `clips` only needs a length here: the sampler never touches pixels
    return PairSet(tuple(entries), np.asarray(rows), list(range(n_videos)), ())  # type: ignore[arg-type]


def test_share_zero_is_the_random_sampler():
    pairs = pair_set()
    assert neighbour_batches(pairs, 16, 3, 2, share=0.0) == epoch_batches(pairs, 16, 3, 2)


def test_deterministic_and_every_clip_at_most_once():
    pairs = pair_set()
    a = neighbour_batches(pairs, 16, 7, 1, share=0.5)
    assert a == neighbour_batches(pairs, 16, 7, 1, share=0.5)
    assert a != neighbour_batches(pairs, 16, 7, 2, share=0.5)  # a new epoch, new batches
    clips = [v for _, rows in a for v in rows]
    assert len(clips) == len(set(clips))
    assert len(clips) >= 96 - 1  # at most one clip dropped (a final batch of one)
    for caps, rows in a:
        assert 2 <= len(caps) <= 16
        assert all(int(pairs.video_rows[c]) == r for c, r in zip(caps, rows))  # each caption is of its clip


def test_no_identical_captions_in_a_batch():
    entries = tuple(ManifestEntry(f"v{v}.mp4", "a red circle" if v % 3 else f"a blue square {v}", split="train")
                    for v in range(40))
    pairs = PairSet(entries, np.arange(40), list(range(40)), ())  # type: ignore[arg-type]
    for caps, _ in neighbour_batches(pairs, 8, 0, 0, share=1.0):
        texts = [pairs.entries[c].caption for c in caps]
        assert len(texts) == len(set(texts))


def test_groups_are_nearer_than_random_pairs():
    pairs = pair_set()
    batches = neighbour_batches(pairs, 16, 0, 0, share=0.5, group=4)

    def mean_pair_similarity(caps: list[int]) -> float:
        v = caption_vectors([pairs.entries[c].caption for c in caps])
        s = v @ v.T
        return float(s[~np.eye(len(caps), dtype=bool)].mean())

    grouped = [mean_pair_similarity(caps[:4]) for caps, _ in batches]  # a batch lists its groups first
    random = [mean_pair_similarity(caps[:4]) for caps, _ in epoch_batches(pairs, 16, 0, 0)]
    assert np.mean(grouped) > np.mean(random) + 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="share"):
        neighbour_batches(pair_set(8), 4, 0, 0, share=1.5)
    with pytest.raises(ValueError, match="group"):
        neighbour_batches(pair_set(8), 4, 0, 0, share=0.5, group=1)


def test_tfidf_vectors_by_hand():
    v = caption_vectors(["red circle", "red square"])
    # terms: "circle", "red", "red circle", "red square", "square"; idf(red) = 1, the others log(3/2) + 1
    idf = np.log(1.5) + 1
    first = np.array([idf, 1.0, idf, 0.0, 0.0])
    np.testing.assert_allclose(v[0], first / np.linalg.norm(first), rtol=1e-6)
    np.testing.assert_allclose(float(v[0] @ v[1]), 1.0 / (1 + 2 * idf**2), rtol=1e-6)
