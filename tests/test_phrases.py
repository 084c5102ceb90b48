"""Finding listed phrases in captions: whole words, any case, the longest phrase where two overlap."""

from __future__ import annotations

from tvr.phrases import phrase_pattern, value_of


def test_longest_phrase_wins_and_only_whole_words_match():
    pattern = phrase_pattern(["left", "moves to the left", "hum", "plus sign"])
    text = "It Moves to the Left with a human hum, then a plus sign, then left; plus signs"
    assert [m.group(0) for m in pattern.finditer(text)] == ["Moves to the Left", "hum", "plus sign", "left"]


def test_value_of_maps_every_phrase_in_lower_case():
    assert value_of({"cyan": ("cyan", "Turquoise"), "red": ("red",)}) == {"cyan": "cyan", "turquoise": "cyan", "red": "red"}
