"""The paraphrase twin of the test captions: every word for a colour, shape, motion or sound replaced
by a synonym that no caption of the world (nor any pretraining still) ever uses.

A model whose text side learned its words only from the training captions cannot know that
"crimson" is "red"; one that knows English can. `tvr synth` writes the twin as
`test_paraphrase.jsonl` beside `test.jsonl` (same videos, same ids, rewritten captions).
"""

from __future__ import annotations

import re

from tvr.phrases import phrase_pattern

# Longest phrases first, so "moves to the left" is rewritten whole before "left" alone could be.
SYNONYMS: dict[str, str] = {
    # motions (the verbs, participles and plural forms captions.py uses)
    "moves to the left": "glides westward", "moves to the right": "glides eastward",
    "sliding to the left": "gliding westward", "sliding to the right": "gliding eastward",
    "drifts leftward": "glides westward", "drifts rightward": "glides eastward",
    "drops downward": "plunges earthward", "goes upward": "ascends", "goes down": "descends",
    "going upward": "ascending", "floats up": "ascends", "moves left": "glides westward",
    "moves right": "glides eastward", "moves up": "ascends", "moves down": "descends",
    "slides left": "glides westward", "slides right": "glides eastward", "travels left": "journeys westward",
    "travels right": "journeys eastward", "moving left": "gliding westward", "moving right": "gliding eastward",
    "moving up": "ascending", "moving down": "descending", "heading left": "gliding westward",
    "heading right": "gliding eastward", "move left": "glide westward", "move right": "glide eastward",
    "move up": "ascend", "move down": "descend", "slide left": "glide westward", "slide right": "glide eastward",
    "rises": "ascends", "climbs": "ascends", "rising": "ascending", "rise": "ascend", "falls": "descends",
    "sinks": "descends", "falling": "descending", "sinking": "descending", "fall": "descend",
    "stays still": "is motionless", "does not move": "is motionless", "sits still": "is motionless",
    "remains in place": "is motionless", "standing still": "motionless", "not moving": "motionless",
    "at rest": "motionless", "stay still": "are motionless", "do not move": "are motionless",
    # sounds
    "while beeps sound": "while chirps ring out", "with beeping": "with chirping",
    "with repeated beeps": "with repeated chirps", "as something beeps": "as something chirps",
    "while it beeps": "while it chirps", "to the sound of beeps": "to the sound of chirps",
    "with a low hum in the background": "with a low buzz in the background", "with a low hum": "with a low buzz",
    "over a low humming sound": "over a low buzzing sound", "while a hum drones": "while a buzz lingers",
    "with a humming noise": "with a buzzing whir", "over a steady hum": "over a steady buzz",
    "with no sound at all": "in a total hush", "in silence": "in a hush", "silently": "soundlessly",
    "with no sound": "noiselessly", "without any sound": "in a hush",
    # shapes
    "plus sign": "x mark", "circle": "sphere", "disc": "sphere", "ball": "orb", "square": "block",
    "box": "block", "triangle": "wedge", "cross": "x mark",
    # colours
    "red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden", "purple": "lilac",
    "violet": "lilac", "cyan": "aqua", "turquoise": "aqua",
}
_PATTERN = phrase_pattern(SYNONYMS)


def paraphrase(caption: str) -> str:
    """`caption` with every colour, shape, motion and sound phrase replaced by its synonym (case of the
    first letter kept); 'a' becomes 'an' before a vowel where a replacement starts with one."""
    def swap(m: re.Match[str]) -> str:
        word = SYNONYMS[m.group(0).lower()]
        return word[0].upper() + word[1:] if m.group(0)[0].isupper() else word

    out = _PATTERN.sub(swap, caption)
    return re.sub(r"\b([Aa]) (?=[aeiou])", lambda m: m.group(1) + "n ", out)
