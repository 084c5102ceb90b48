"""Text foils: a clip must prefer its caption to the same caption with one attribute word wrong.

Contrastive training lets a model match captions by the words that tell most batch members apart.
On scenes built from a few colours and shapes, colour alone usually does, and a model learns shapes
(and which colour belongs to which object) only as far as it must: fine-tuned models reject a
caption with one shape word changed on its own video about two times in three, but one with a
colour changed 98 times in a hundred (`bench/foil_probe.py`). This makes the missing contrast out of
every training caption that names a colour, shape or size, as NegCLIP does for images (Yuksekgonul et al., ICLR
2023, "When and why vision-language models behave like bags-of-words"): its foil (`foil`) either
swaps two words of one class that name different values ("a red circle beside a blue square" →
"a blue circle beside a red square": same words, wrong binding) or replaces one word with another
value of its class ("a red circle" → "a red triangle"). The loss (`foil_loss`) is the two-way
softmax between the caption and its foil on the caption's own clip, on the model's logit scale,
averaged over the batch's foiled captions and added to the contrastive loss with a weight
(`train.text_foils`).

The classes are common English words for colours, shapes and sizes (`LEXICON`), so it needs nothing
but captions and works on any dataset whose captions use them; a caption that names none of them
gets no foil, and one without two different values of a class is only ever replaced, not swapped. A caption's foil is the same in every epoch (drawn
from a hash of the caption and the run's seed), so text encoders that cache per caption text
(the MiniLM context) encode each foil once.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

from torch import Tensor

from tvr.models.base import RetrievalModel, TextEmb, VideoEmb
from tvr.models.losses import preferred_pair_loss
from tvr.phrases import phrase_pattern, value_of

# class -> value -> the words that name it (synonyms share a value: a foil never trades one for another)
LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
        "purple": ("purple", "violet"), "cyan": ("cyan", "turquoise"), "orange": ("orange",), "pink": ("pink",),
        "black": ("black",), "white": ("white",), "brown": ("brown",), "grey": ("grey", "gray"),
    },
    "shape": {
        "circle": ("circle", "disc", "disk", "ball"), "square": ("square", "box", "cube"), "triangle": ("triangle",),
        "cross": ("cross", "plus sign"), "star": ("star",), "rectangle": ("rectangle",), "heart": ("heart",),
    },
    "size": {"large": ("large", "big"), "small": ("small", "little", "tiny")},
}
# the values a replacement may name: those a caption set is likely to use (the first six colours, four shapes)
REPLACEMENTS: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow", "purple", "cyan"),
    "shape": ("circle", "square", "triangle", "cross"),
    "size": ("large", "small"),
}
_VALUE_OF = {cls: value_of(values) for cls, values in LEXICON.items()}
_PATTERN = {cls: phrase_pattern(words) for cls, words in _VALUE_OF.items()}


def attribute_words(caption: str) -> list[tuple[str, str, int, int]]:
    """(class, value, start, end) of every lexicon word in `caption`, in order."""
    hits = [(cls, _VALUE_OF[cls][m.group(0).lower()], m.start(), m.end())
            for cls, pattern in _PATTERN.items() for m in pattern.finditer(caption)]
    return sorted(hits, key=lambda h: h[2])


def _respell(word: str, like: str) -> str:
    """`word` with the capital of `like`'s first letter (a caption may start with the attribute)."""
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _swaps(caption: str, cls: str | None) -> list[tuple[tuple[str, str, int, int], tuple[str, str, int, int]]]:
    hits = [h for h in attribute_words(caption) if cls is None or h[0] == cls]
    return [(a, b) for i, a in enumerate(hits) for b in hits[i + 1:] if a[0] == b[0] and a[1] != b[1]]


def swapped(caption: str, cls: str | None, rng: random.Random) -> str | None:
    """`caption` with two words of one class (`cls`; None: any) that name different values trading
    places (one pair, drawn by `rng`); None when it has no such pair."""
    pairs = _swaps(caption, cls)
    if not pairs:
        return None
    a, b = pairs[rng.randrange(len(pairs))]
    first, second = caption[a[2]:a[3]], caption[b[2]:b[3]]
    return (caption[:a[2]] + _respell(second.lower(), first) + caption[a[3]:b[2]]
            + _respell(first.lower(), second) + caption[b[3]:])


def replaced(caption: str, cls: str | None, rng: random.Random) -> str | None:
    """`caption` with one word of class `cls` (None: of any class) naming another value of its class;
    None when it has no such word."""
    hits = [h for h in attribute_words(caption) if cls is None or h[0] == cls]
    if not hits:
        return None
    kind, value, start, end = hits[rng.randrange(len(hits))]
    other = rng.choice([v for v in REPLACEMENTS[kind] if v != value])
    return caption[:start] + _respell(LEXICON[kind][other][0], caption[start:end]) + caption[end:]


def foil(caption: str, seed: int = 0) -> str | None:
    """The training foil of `caption`: half the time, when it can, two words of one class swapped
    (`swapped`, the pair drawn among all such pairs), else one word replaced (`replaced`); None when
    it names no attribute. Deterministic in (caption, seed)."""
    rng = random.Random(zlib.crc32(caption.encode("utf-8")) ^ (seed * 0x9E3779B1))
    if _swaps(caption, None) and rng.random() < 0.5:
        return swapped(caption, None, rng)
    return replaced(caption, None, rng)


def foils_of(captions: Sequence[str], seed: int = 0) -> tuple[list[int], list[str]]:
    """(positions of the captions that get a foil, their foils)."""
    rows, out = [], []
    for i, c in enumerate(captions):
        f = foil(c, seed)
        if f is not None:
            rows.append(i)
            out.append(f)
    return rows, out


def foil_loss(model: RetrievalModel, text: TextEmb, foils: TextEmb, video: VideoEmb, denominator: int) -> Tensor:
    """Σ over the given pairs of −log softmax(caption, foil)[caption] on the pair's clip, divided by
    `denominator`. `text`, `foils` and `video` hold the same n pairs row by row; the caller divides by
    the number of foiled captions in the whole (global) batch."""
    return preferred_pair_loss(model, text, video, foils, video, denominator)
