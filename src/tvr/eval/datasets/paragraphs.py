"""Paragraph queries (DiDeMo, ActivityNet): every description of a video joined into one query.

The joined caption is what retrieval uses; the separate sentences and their times are kept in the
entry's extra fields (`sentences`, `sentence_times` in seconds) so a user can rebuild other
protocols (e.g. sentence-level moment retrieval) from the same manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tvr.io.manifest import ManifestEntry


@dataclass(frozen=True)
class Sentence:
    """One description of a video with its [start, end] in seconds."""

    text: str
    start: float
    end: float


def join_sentences(sentences: Sequence[str]) -> str:
    """The paragraph query: sentences in the given order, separated by one space."""
    return " ".join(s.strip() for s in sentences if s.strip())


def paragraph_entry(video: str, split: str, ident: str, sentences: Sequence[Sentence], **extra: object) -> ManifestEntry:
    """One manifest line for a whole video whose query is its sentences in the given order."""
    return ManifestEntry(
        video=video,
        caption=join_sentences([s.text for s in sentences]),
        split=split,
        id=ident,
        extra={
            "sentences": [s.text for s in sentences],
            "sentence_times": [[s.start, s.end] for s in sentences],
            **extra,
        },
    )
