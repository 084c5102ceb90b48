"""Captions from templates with varied wording: synonyms, word order, optional attributes.

Every caption is true of its video: colours and shapes are always named for the objects a caption
mentions, order words follow the rendered order, and a sound phrase always matches the track.
Optional parts (size, motion, sound) are left out at random, except where a test scene's
near-duplicate differs in them (then they are required, or the query would fit both videos).
"""

from __future__ import annotations

import numpy as np

from tvr.synth.world import SEQUENCE_BESIDE, ObjectSpec, Scene

COLOUR_WORDS = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "cyan": ("cyan", "turquoise"),
}
SHAPE_WORDS = {
    "circle": ("circle", "disc", "ball"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "cross": ("cross", "plus sign"),
}
SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "little", "tiny")}
MOTION_VERBS = {
    "left": ("moves left", "moves to the left", "slides left", "drifts leftward", "travels left"),
    "right": ("moves right", "moves to the right", "slides right", "drifts rightward", "travels right"),
    "up": ("moves up", "rises", "goes upward", "floats up", "climbs"),
    "down": ("moves down", "falls", "sinks", "drops downward", "goes down"),
    "static": ("stays still", "does not move", "sits still", "remains in place"),
}
MOTION_PARTICIPLES = {
    "left": ("moving left", "sliding to the left", "heading left"),
    "right": ("moving right", "sliding to the right", "heading right"),
    "up": ("moving up", "rising", "going upward"),
    "down": ("moving down", "falling", "sinking"),
    "static": ("standing still", "not moving", "at rest"),
}
PLURAL_MOTION = {
    "left": ("move left", "slide left"),
    "right": ("move right", "slide right"),
    "up": ("move up", "rise"),
    "down": ("move down", "fall"),
    "static": ("stay still", "do not move"),
}
SOUND_SUFFIX = {
    "beeps": ("while beeps sound", "with beeping", "with repeated beeps", "as something beeps"),
    "hum": ("with a low hum", "over a low humming sound", "while a hum drones", "with a humming noise"),
    "silence": ("in silence", "silently", "with no sound", "without any sound"),
}
SOUND_PREFIX = {
    "beeps": ("to the sound of beeps,", "while beeps sound,"),
    "hum": ("with a low hum in the background,", "over a steady hum,"),
    "silence": ("in silence,", "with no sound at all,"),
}
SOUND_WORDS = {  # words that only a caption of that sound contains (tests check this)
    "beeps": ("beep",),
    "hum": ("hum",),
    "silence": ("silen", "no sound", "without any sound"),
}
P_SOUND = 0.35  # chance an unforced caption mentions the sound
P_SIZE = 0.4
P_MOTION = 0.85


class _Words:
    """Random phrase choices for one video, from its own generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def noun(self, obj: ObjectSpec, size: bool | None = None) -> str:
        """'a [size] colour shape' (sometimes 'a shape coloured colour')."""
        colour = self.pick(COLOUR_WORDS[obj.colour])
        shape = self.pick(SHAPE_WORDS[obj.shape])
        use_size = self.chance(P_SIZE) if size is None else size
        size_word = self.pick(SIZE_WORDS[obj.size]) + " " if use_size else ""
        if not use_size and self.chance(0.15):
            return f"a {shape} coloured {colour}"
        return _article(f"{size_word}{colour} {shape}")

    def clause(self, obj: ObjectSpec) -> str:
        """'a red circle moves left' (or '... appears' when the motion is left out)."""
        if self.chance(P_MOTION):
            return f"{self.noun(obj)} {self.pick(MOTION_VERBS[obj.motion])}"
        return f"{self.noun(obj)} {self.pick(('appears', 'is shown', 'shows up'))}"

    def with_participle(self, obj: ObjectSpec) -> str:
        if self.chance(P_MOTION):
            return f"{self.noun(obj)} {self.pick(MOTION_PARTICIPLES[obj.motion])}"
        return self.noun(obj)


def captions_for(scene: Scene, n: int | None = None) -> list[str]:
    """`n` (default: 2 or 3, drawn per video) distinct captions of `scene`; fewer only if the
    templates cannot produce that many. Deterministic for the scene's caption seed."""
    words = _Words(np.random.default_rng(scene.caption_seed))
    if n is None:
        n = 2 + int(words.rng.integers(2))
    # a sound near-duplicate exists: every pair member tagged "sound", every member of a group of four
    force_sound = "sound" in scene.tags or (scene.kind == SEQUENCE_BESIDE and scene.group is not None)
    out: list[str] = []
    for _ in range(20 * n):
        text = _caption(scene, words, force_sound)
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out


def _caption(scene: Scene, w: _Words, force_sound: bool) -> str:
    body = {"single": _single, "sequence": _sequence, "together": _together, "beside": _beside,
            SEQUENCE_BESIDE: _sequence_beside}[scene.kind](scene, w)
    if force_sound or w.chance(P_SOUND):
        if w.chance(0.3):
            body = f"{w.pick(SOUND_PREFIX[scene.sound])} {body}"
        else:
            suffix = w.pick(SOUND_SUFFIX[scene.sound])
            if scene.kind == "single" and scene.sound == "beeps" and w.chance(0.3):
                suffix = "while it beeps"
            body = f"{body} {suffix}"
    if w.chance(0.3):
        body = body[0].upper() + body[1:] + "."
    return body


def _single(scene: Scene, w: _Words) -> str:
    (obj,) = scene.objects
    templates = (
        lambda: w.clause(obj),
        lambda: f"there is {w.with_participle(obj)}",
        lambda: w.with_participle(obj),
        lambda: f"a video of {w.noun(obj)} that {w.pick(MOTION_VERBS[obj.motion])}",
        lambda: f"{w.noun(obj)} on a grey background",
    )
    return w.pick(templates)()


THEN_FORMS = ("{a}, then {b}", "first {a}, then {b}", "{a}, and after that {b}", "{a}; afterwards {b}")  # a before b


def _sequence(scene: Scene, w: _Words) -> str:
    first, second = sorted(scene.objects, key=lambda o: o.t_start)
    a, b = w.clause(first), w.clause(second)
    return w.pick(THEN_FORMS + ("{b} after {a}",)).format(a=a, b=b)


def _together(scene: Scene, w: _Words) -> str:
    one, two = scene.objects
    if w.chance(0.5):
        one, two = two, one  # both are on screen at once: either may be named first
    templates = [
        lambda: f"{w.clause(one)} while {w.clause(two)}",
        lambda: f"{w.with_participle(one)} and {w.with_participle(two)}",
        lambda: f"two shapes: {w.noun(one)} and {w.noun(two)}",
        lambda: f"{w.noun(one)} together with {w.noun(two)}",
    ]
    if one.motion == two.motion:
        templates.append(lambda: f"{w.noun(one)} and {w.noun(two)} both {w.pick(PLURAL_MOTION[one.motion])}")
    return w.pick(templates)()


BESIDE_FORMS = ("{small} beside {large}", "{small} next to {large}", "{large} with {small} beside it")


def _beside(scene: Scene, w: _Words) -> str:
    large, small = scene.objects
    small_np = w.noun(small, size=True)
    large_np = _large_description(large, w)
    motion = ""
    if w.chance(0.5):
        motion = f", {w.pick(('both', 'the two', 'together they'))} {w.pick(PLURAL_MOTION[large.motion])}"
    return w.pick(BESIDE_FORMS + ("{small} sits beside {large}",)).format(small=small_np, large=large_np) + motion


def _sequence_beside(scene: Scene, w: _Words) -> str:
    """'a tiny blue cross beside a large red square, then a green circle moves left' (in time order)."""
    large, small, other = scene.objects
    small_np = w.noun(small, size=True)
    large_np = _large_description(large, w)
    pair = w.pick(BESIDE_FORMS).format(small=small_np, large=large_np)
    alone = w.clause(other)
    a, b = (pair, alone) if large.t_start < other.t_start else (alone, pair)
    return w.pick(THEN_FORMS).format(a=a, b=b)


def _large_description(large: ObjectSpec, w: _Words) -> str:
    """The large object: its size always, its colour and shape each only sometimes."""
    size = w.pick(SIZE_WORDS["large"])
    colour = w.pick(COLOUR_WORDS[large.colour]) + " " if w.chance(0.6) else ""
    shape = w.pick(SHAPE_WORDS[large.shape]) if w.chance(0.6) else w.pick(("shape", "object"))
    return f"a {size} {colour}{shape}"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase
