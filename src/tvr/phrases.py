"""Listed words and phrases in free text (captions): whole words only, in any case, the longest first.

The synthetic world's paraphrases, the text foils and the sound negatives each look up a table of
English phrases in captions; they share these two helpers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping


def phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    """A regex that finds any of `phrases` as whole words in any case; where two overlap ("moves to the
    left", "left") the longer one wins."""
    alternatives = "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\b", re.IGNORECASE)


def value_of(table: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """{phrase in lower case: value} from {value: the phrases that name it}."""
    return {p.lower(): value for value, phrases in table.items() for p in phrases}
