"""Still frames of the synthetic world with captions of what is visible: the pretraining data.

CLIP was pretrained on images with alt-text, far more of them than any video fine-tuning set. The
lab's stand-in draws unlimited stills from the same renderer as the videos: one to three shapes
(any colour, shape and size, placed anywhere, never overlapping) on the world's backgrounds, each
caption naming every object's colour and shape, and sometimes its size, its place in the frame and
the object count. The frames are chroma-subsampled the way yuv420p video is, so a still looks like
a decoded video frame. Nothing here reads a world on disk: pretraining cannot see any test split.
On request a still also gets a foil, its caption with one shape changed (`caption_and_foil`): a
hard negative of the kind NegCLIP (Yuksekgonul et al., 2023) adds to CLIP's training.

Objects placed at random almost never touch, but in videos a small object often sits right beside
a large one (the world's "beside" scenes). With `beside` > 0 that fraction of stills holds such a
pair — a large and a small object side by side, a few pixels apart — sometimes with a third object
elsewhere, and the caption says so ("a small red cross next to a large green square").

A foil changes the caption only. A twin (`twin_stills`) changes the picture too: the same scene
rendered again with one object's shape changed, or with two objects' shapes traded, and captioned
in the same words but for the shape. A batch that holds both stills of a pair can only match them
to their captions by shape (and, for a trade, by which colour each shape has), so the image tower
gets that contrast in its own gradient, not only the text side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tvr.synth.captions import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
from tvr.synth.render import render_frames
from tvr.synth.world import COLOURS, HALF_SIZE, SHAPES, ObjectSpec, Scene

COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
P_SIZE = 0.5  # chance a caption names an object's size
P_PLACE = 0.5  # chance it names where the object is
P_COUNT = 0.3  # chance a multi-object caption starts with the count
OBJECT_WEIGHTS = (0.4, 0.4, 0.2)  # one, two or three objects
BESIDE_GAP = 0.03  # fraction of the frame between a beside pair's edges, as in the world's beside scenes
BESIDE_WORDS = ("next to", "beside")
P_THIRD = 0.4  # chance a beside still also holds a third object


@dataclass(frozen=True)
class Still:
    """One rendered still, its caption and, when asked for, its foil (see `caption_and_foil`)."""

    pixels: np.ndarray  # [H, W, 3] uint8 RGB
    caption: str
    foil: str | None = None
    objects: tuple[ObjectSpec, ...] = ()  # what the still shows (for attribute targets)


@dataclass(frozen=True)
class _Phrase:
    """The words drawn for one object: 'a [size] colour shape [place]'."""

    obj: ObjectSpec
    colour: str
    shape: str
    size: str | None
    place: str | None

    def text(self, shape: str | None = None) -> str:
        phrase = " ".join(w for w in (self.size, self.colour, shape or self.shape) if w)
        phrase = ("an " if phrase[0] in "aeiou" else "a ") + phrase
        return f"{phrase} {self.place}" if self.place else phrase


def place_words(x: float, y: float) -> str:
    """Where a centre (fractions of the frame) lies: 'on the left', 'at the top right', 'in the middle'."""
    column = "left" if x < 0.4 else "right" if x > 0.6 else ""
    row = "top" if y < 0.4 else "bottom" if y > 0.6 else ""
    if row and column:
        return f"at the {row} {column}"
    if row:
        return f"at the {row}"
    if column:
        return f"on the {column}"
    return "in the middle"


class StillSampler:
    """Draws stills from one seeded generator: the same seed gives the same stream of stills.
    `beside`: the fraction of stills that hold a large object with a small one right beside it."""

    def __init__(self, seed: int, size: int, beside: float = 0.0) -> None:
        if not 0.0 <= beside <= 1.0:
            raise ValueError(f"beside must be in [0, 1], got {beside}")
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.beside = beside

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def objects(self) -> tuple[ObjectSpec, ...]:
        n = 1 + int(self.rng.choice(3, p=OBJECT_WEIGHTS))
        colours = [str(c) for c in self.rng.permutation(list(COLOURS))[:n]]  # distinct: captions stay unambiguous
        for _ in range(100):
            placed = [self.placed_anywhere(colour) for colour in colours]
            if all(apart(a, b) for i, a in enumerate(placed) for b in placed[i + 1 :]):
                return tuple(placed)
        return tuple(placed[:1])  # crowded draws fall back to a single object

    def placed_anywhere(self, colour: str) -> ObjectSpec:
        """One static object of `colour`: any shape, large or small, anywhere inside the frame."""
        size = "large" if self.rng.random() < 0.5 else "small"
        half = float(self.rng.uniform(*HALF_SIZE[size]))
        x, y = (float(v) for v in self.rng.uniform(half, 1 - half, size=2))
        return ObjectSpec(colour, self.pick(SHAPES), size, "static", half, x, y)

    def beside_objects(self) -> tuple[ObjectSpec, ...]:
        """(large, small[, other]): the small object BESIDE_GAP from the large one's left or right
        edge at the same height; a third object, if any, kept apart from both."""
        colours = [str(c) for c in self.rng.permutation(list(COLOURS))[:3]]
        big, small = (float(self.rng.uniform(*HALF_SIZE[s])) for s in ("large", "small"))
        offset = (1.0 if self.rng.random() < 0.5 else -1.0) * (big + BESIDE_GAP + small)
        lo, hi = min(-big, offset - small), max(big, offset + small)
        x, y = float(self.rng.uniform(-lo, 1 - hi)), float(self.rng.uniform(big, 1 - big))
        pair = (ObjectSpec(colours[0], self.pick(SHAPES), "large", "static", big, x, y),
                ObjectSpec(colours[1], self.pick(SHAPES), "small", "static", small, x + offset, y))
        if self.rng.random() >= P_THIRD:
            return pair
        for _ in range(100):
            other = self.placed_anywhere(colours[2])
            if all(apart(other, p) for p in pair):
                return (*pair, other)
        return pair

    def scene(self) -> Scene:
        grey = int(self.rng.integers(70, 121))
        tint = self.rng.integers(-8, 9, size=3)
        angle, amp = float(self.rng.uniform(0, 2 * math.pi)), float(self.rng.uniform(0, 20))
        beside = bool(self.beside) and self.rng.random() < self.beside  # no draw when off: streams stay as they were
        objects = self.beside_objects() if beside else self.objects()
        return Scene(
            video_id="still", kind="beside" if beside else "still", objects=objects, sound="silence", split="pretrain",
            background=tuple(int(np.clip(grey + t, 0, 255)) for t in tint),
            gradient=(amp * math.cos(angle), amp * math.sin(angle)),
            noise_seed=int(self.rng.integers(2**31)),
        )

    def caption(self, scene: Scene) -> str:
        phrases = self._phrases(scene)
        count_first = self._count_first(len(phrases))
        texts = _link(phrases, [p.text() for p in phrases], scene, self._relation(scene))
        return _join(texts, count_first, len(phrases))

    def caption_and_foil(self, scene: Scene) -> tuple[str, str]:
        """(caption, foil). The foil is a hard negative for the still: the same objects in the same
        words, except that one object's shape word names another shape or, half the time when two
        objects differ in shape, the two trade shape words. Colours, sizes, places and the count stay
        true, so only a model that sees shapes (and which colour each belongs to) can reject it.
        The caption is the one `caption` draws from the same generator state."""
        phrases = self._phrases(scene)
        count_first = self._count_first(len(phrases))
        texts = [p.text() for p in phrases]
        foil = list(texts)
        differing = [(i, j) for i in range(len(phrases)) for j in range(i + 1, len(phrases))
                     if phrases[i].obj.shape != phrases[j].obj.shape]
        if differing and self.rng.random() < 0.5:
            i, j = differing[int(self.rng.integers(len(differing)))]
            foil[i], foil[j] = phrases[i].text(phrases[j].shape), phrases[j].text(phrases[i].shape)
        else:
            i = int(self.rng.integers(len(phrases)))
            other = self.pick([s for s in SHAPES if s != phrases[i].obj.shape])
            foil[i] = phrases[i].text(self.pick(SHAPE_WORDS[other]))
        relation = self._relation(scene)
        n = len(phrases)
        return (_join(_link(phrases, texts, scene, relation), count_first, n),
                _join(_link(phrases, foil, scene, relation), count_first, n))

    def twin_stills(self) -> tuple[Still, Still]:
        """A still and its twin (see `twin_scenes`), rendered."""
        return tuple(Still(self.render(scene), caption, objects=scene.objects) for scene, caption in self.twin_scenes())

    def twin_scenes(self) -> tuple[tuple[Scene, str], tuple[Scene, str]]:
        """(scene, caption) and its twin: the same scene (background, noise, places, colours, sizes)
        and the same caption words, except that one object has another shape or, half the time when
        two objects differ in shape, the two trade shapes; each captioned with its own shapes."""
        scene = self.scene()
        phrases = self._phrases(scene)
        count_first = self._count_first(len(phrases))
        relation = self._relation(scene)
        differing = [(i, j) for i in range(len(phrases)) for j in range(i + 1, len(phrases))
                     if phrases[i].obj.shape != phrases[j].obj.shape]
        if differing and self.rng.random() < 0.5:
            i, j = differing[int(self.rng.integers(len(differing)))]
            new_shape = {i: phrases[j].obj.shape, j: phrases[i].obj.shape}
        else:
            i = int(self.rng.integers(len(phrases)))
            new_shape = {i: self.pick([s for s in SHAPES if s != phrases[i].obj.shape])}
        moved = {id(phrases[k].obj): replace(phrases[k].obj, shape=shape) for k, shape in new_shape.items()}
        twin = replace(scene, objects=tuple(moved.get(id(o), o) for o in scene.objects))
        twin_phrases = [replace(p, obj=moved[id(p.obj)], shape=self.pick(SHAPE_WORDS[new_shape[k]])) if k in new_shape
                        else replace(p, obj=twin.objects[scene.objects.index(p.obj)]) for k, p in enumerate(phrases)]
        n = len(phrases)
        return tuple((sc, _join(_link(ph, [p.text() for p in ph], sc, relation), count_first, n))
                     for sc, ph in ((scene, phrases), (twin, twin_phrases)))

    def _relation(self, scene: Scene) -> str | None:
        """For a beside still, the words that tie its small object to the large one."""
        return self.pick(BESIDE_WORDS) if scene.kind == "beside" else None

    def _phrases(self, scene: Scene) -> list[_Phrase]:
        return [self._phrase(scene.objects[int(i)], scene) for i in self.rng.permutation(len(scene.objects))]

    def _phrase(self, obj: ObjectSpec, scene: Scene) -> _Phrase:
        colour, shape = self.pick(COLOUR_WORDS[obj.colour]), self.pick(SHAPE_WORDS[obj.shape])
        size = self.pick(SIZE_WORDS[obj.size]) if self.rng.random() < P_SIZE else None
        place = place_words(obj.x0, obj.y0) if self.rng.random() < P_PLACE else None
        if scene.kind == "beside" and obj is scene.objects[1]:
            size, place = self.pick(SIZE_WORDS["small"]), None  # "a small … next to a large …"
        elif scene.kind == "beside" and obj is scene.objects[0]:
            size = self.pick(SIZE_WORDS["large"])
        return _Phrase(obj, colour, shape, size, place)

    def _count_first(self, n_objects: int) -> bool:
        return n_objects > 1 and self.rng.random() < P_COUNT

    def render(self, scene: Scene) -> np.ndarray:
        """[H, W, 3] uint8: `scene` at t = 0 as a decoded video frame."""
        return as_video_frame(render_frames(scene, self.size, seconds=1.0, fps=1.0)[0])

    def still(self, foil: bool = False) -> Still:
        scene = self.scene()
        pixels = self.render(scene)
        if foil:
            return Still(pixels, *self.caption_and_foil(scene), objects=scene.objects)
        return Still(pixels, self.caption(scene), objects=scene.objects)

    def batch(self, n: int) -> tuple[np.ndarray, list[str]]:
        """([n, 3, H, W] uint8, n captions): the layout the image tower takes."""
        pixels, captions, _ = self.batch_with_foils(n, 0)
        return pixels, captions

    def batch_with_foils(self, n: int, n_foils: int, n_twins: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
        """Like `batch`, with `n_twins` twin pairs (`twin_stills`, side by side) first, and the foils
        of the first `n_foils` other stills (0 and 0: the same stills as `batch`)."""
        return lay_out(self.stills(n, n_foils, n_twins), n_foils, n_twins)

    def stills(self, n: int, n_foils: int = 0, n_twins: int = 0) -> list[Still]:
        """The `n` stills `batch_with_foils` lays out, as `Still`s (with the objects each shows)."""
        if not 0 <= 2 * n_twins <= n:
            raise ValueError(f"{n_twins} twin pairs do not fit in {n} stills")
        stills = [s for _ in range(n_twins) for s in self.twin_stills()]
        return stills + [self.still(foil=i < n_foils) for i in range(n - 2 * n_twins)]

    def one_object_stills(self, n: int) -> tuple[np.ndarray, list[ObjectSpec]]:
        """([n, 3, H, W] uint8, each still's object): the next n scenes drawn that hold one object
        (the others are skipped); no captions are drawn. For checks of what a model sees."""
        frames, objects = [], []
        while len(objects) < n:
            scene = self.scene()
            if len(scene.objects) == 1:
                objects.append(scene.objects[0])
                frames.append(self.render(scene))
        return np.stack(frames).transpose(0, 3, 1, 2), objects


def lay_out(stills: list[Still], n_foils: int, n_twins: int) -> tuple[np.ndarray, list[str], list[str]]:
    """([n, 3, H, W] uint8, the n captions, the foils) of `stills` as `StillSampler.stills` orders
    them: `n_twins` pairs first, then the `n_foils` stills that carry a foil."""
    pixels = np.stack([s.pixels for s in stills]).transpose(0, 3, 1, 2)
    return pixels, [s.caption for s in stills], [s.foil for s in stills[2 * n_twins:2 * n_twins + n_foils]]


ATTRIBUTES = tuple((c, s, z) for c in COLOURS for s in SHAPES for z in ("small", "large"))  # 48 presence labels
_ATTRIBUTE_INDEX = {a: i for i, a in enumerate(ATTRIBUTES)}


def attribute_targets(stills: list[Still]) -> np.ndarray:
    """[n, len(ATTRIBUTES)] float32: 1 where the still shows an object of that (colour, shape, size)."""
    out = np.zeros((len(stills), len(ATTRIBUTES)), dtype=np.float32)
    for row, still in enumerate(stills):
        for o in still.objects:
            out[row, _ATTRIBUTE_INDEX[(o.colour, o.shape, o.size)]] = 1.0
    return out


def _link(phrases: list[_Phrase], texts: list[str], scene: Scene, relation: str | None) -> list[str]:
    """The caption's parts: each object's text, except that in a beside still the large object's
    part becomes "SMALL RELATION LARGE" and the small object's own part is dropped."""
    if relation is None:
        return list(texts)
    large = next(i for i, p in enumerate(phrases) if p.obj is scene.objects[0])
    small = next(i for i, p in enumerate(phrases) if p.obj is scene.objects[1])
    parts = list(texts)
    parts[large] = f"{texts[small]} {relation} {texts[large]}"
    return [t for i, t in enumerate(parts) if i != small]


def _join(parts: list[str], count_first: bool, n_objects: int) -> str:
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{COUNT_WORDS[n_objects]} shapes: {body}" if count_first else body


def as_video_frame(rgb: np.ndarray) -> np.ndarray:
    """An RGB frame after a yuv420p round trip (BT.601): chroma averaged over 2×2 pixels, as H.264
    video stores it. [H, W, 3] uint8 → the same shape (odd sizes keep their last row/column)."""
    x = rgb.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cb, cr = (x[..., 2] - y) * 0.564, (x[..., 0] - y) * 0.713
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    for c in (cb, cr):
        block = c[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        c[:h, :w] = np.repeat(np.repeat(block, 2, axis=0), 2, axis=1)
    r, b = y + cr / 0.713, y + cb / 0.564
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def apart(a: ObjectSpec, b: ObjectSpec, margin: float = 0.02) -> bool:
    """The stills' spacing rule: two objects' boxes (with `margin`) are apart along x or along y."""
    reach = 1.2 * (a.half_size + b.half_size) + margin  # squares and crosses reach past the half-size
    return abs(a.x0 - b.x0) > reach or abs(a.y0 - b.y0) > reach
