"""The synthetic world's vocabulary and scene sampling, including held-out pairs and test near-duplicates.

Every scene is a plain value (`Scene`), sampled in one process from one seeded generator, so a seed
fixes the whole collection no matter how many workers render it. The test split is built so each
paper's mechanism is *necessary* for some queries: order-swapped pairs need temporal modelling,
sound-swapped pairs need audio, small-object-swapped pairs need fine-grained tokens, and held-out
(colour, shape) pairs need compositional generalisation. Tags on each scene say which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

# Saturated, well separated hues (they stay apart after yuv420p chroma subsampling at 64 px).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 190, 40),
    "blue": (35, 75, 235),
    "yellow": (240, 220, 20),
    "purple": (160, 45, 220),
    "cyan": (25, 215, 220),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("large", "small")
MOTIONS = ("left", "right", "up", "down", "static")
SOUNDS = ("beeps", "hum", "silence")
KINDS = ("single", "sequence", "together", "beside")
# In worlds with groups of four: a large object with a small one beside it, then another object
# (or the other way round), so one scene can differ from its near-duplicates in order, sound or the
# small object. Also drawn for training there, so the composition itself is not new at test time.
SEQUENCE_BESIDE = "sequence_beside"
# What distinguishes a test scene from its near-duplicate (or from everything seen in training);
# "base" marks the original scene of a group of four.
DISTINCTIONS = ("order", "sound", "small", "heldout", "base")

# Object half-sizes as a fraction of the frame side: large ≈ 30–44 % of the frame, small ≈ 12–18 %.
HALF_SIZE = {"large": (0.15, 0.22), "small": (0.06, 0.09)}
TRAVEL = 0.35  # how far (fraction of the frame) a moving object goes during its time window
_DIRECTION = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "static": (0.0, 0.0)}


@dataclass(frozen=True)
class ObjectSpec:
    """One shape: appearance, where it starts (centre, fraction of the frame) and how it moves."""

    colour: str
    shape: str
    size: str
    motion: str
    half_size: float  # fraction of the frame side
    x0: float
    y0: float
    travel: float = TRAVEL
    t_start: float = 0.0  # visible during [t_start, t_end) as fractions of the clip
    t_end: float = 1.0

    def centre(self, progress: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre (fractions of the frame) at the given progress through its window, in [0, 1]."""
        dx, dy = _DIRECTION[self.motion]
        return self.x0 + dx * self.travel * progress, self.y0 + dy * self.travel * progress

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one video and caption it."""

    video_id: str
    kind: str
    objects: tuple[ObjectSpec, ...]  # beside: (large, small); sequence: in on-screen order
    sound: str
    split: str
    tags: tuple[str, ...] = ()  # distinctions (see DISTINCTIONS); the kind is added by `all_tags`
    group: str | None = None  # near-duplicate group id (test only)
    audio_stream: bool = True  # False: silent video written without any audio stream
    extension: str = ".mp4"
    video_codec: str | None = None  # None: the container's default
    background: tuple[int, int, int] = (90, 90, 90)
    gradient: tuple[float, float] = (0.0, 0.0)  # brightness change across the frame (x, y), 0–255 units
    beep_hz: float = 1000.0
    hum_hz: float = 120.0
    noise_seed: int = 0
    caption_seed: int = 0

    @property
    def all_tags(self) -> list[str]:
        return [*self.tags, self.kind]

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "objects"}
        out["objects"] = [o.__dict__.copy() for o in self.objects]
        out["tags"] = list(self.tags)
        out["background"] = list(self.background)
        out["gradient"] = list(self.gradient)
        return out


@dataclass(frozen=True)
class WorldConfig:
    """How many scenes of what; fractions are of the number of videos."""

    videos: int
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    heldout_pairs: int = 4
    other_container_fraction: float = 0.1  # WebM/VP9 and MKV (H.264 or FFV1) instead of MP4
    silent_without_stream: float = 0.5  # share of silent videos that carry no audio stream at all
    kind_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # over KINDS, train/val and plain test
    # test scene recipes: order pair, sound pair, small pair, held-out single, plain single
    test_weights: tuple[float, ...] = (0.25, 0.2, 0.25, 0.15, 0.15)
    # 2: near-duplicate pairs (recipes above); 4: every test scene is in a group of four (a base
    # scene, its order swapped, its sound changed, its small object changed), half of the groups
    # with a held-out (colour, shape) pair, and training also draws that composition
    group_size: int = 2
    sequence_beside_weight: float = 0.2  # share of train/val scenes of that composition (group_size 4)

    def __post_init__(self) -> None:
        if self.group_size not in (2, 4):
            raise ValueError(f"group_size must be 2 or 4, got {self.group_size}")
        if not 0 <= self.sequence_beside_weight < 1:
            raise ValueError(f"sequence_beside_weight must be in [0, 1), got {self.sequence_beside_weight}")


@dataclass(frozen=True)
class World:
    config: WorldConfig
    heldout: tuple[tuple[str, str], ...]
    scenes: tuple[Scene, ...] = field(default_factory=tuple)

    def describe(self) -> dict:
        """The vocabulary and held-out combinations, for world.json."""
        counts = {s: sum(1 for sc in self.scenes if sc.split == s) for s in ("train", "val", "test")}
        tags: dict[str, int] = {}
        for sc in self.scenes:
            if sc.split == "test":
                for t in sc.all_tags:
                    tags[t] = tags.get(t, 0) + 1
        return {
            "format_version": 1,
            "seed": self.config.seed,
            "group_size": self.config.group_size,
            "colours": {k: list(v) for k, v in COLOURS.items()},
            "shapes": list(SHAPES),
            "sizes": list(SIZES),
            "motions": list(MOTIONS),
            "sounds": list(SOUNDS),
            "kinds": list(KINDS),
            "heldout_pairs": [list(p) for p in self.heldout],
            "heldout_note": (
                "these (colour, shape) pairs never appear in train or val; test scenes tagged 'heldout' use them"
            ),
            "videos": counts,
            "test_videos_per_tag": dict(sorted(tags.items())),
            "tags": {
                "order": "test pair: the same two objects with their temporal order swapped",
                "sound": "test pair: the same scene with a different sound track",
                "small": "test pair: the same scene with the small object's colour or shape changed",
                "heldout": "the scene uses a (colour, shape) pair never seen in training",
                "base": "group of four: the scene its three near-duplicates (order, sound, small) were made from",
                **{k: f"scene kind {k!r}" for k in KINDS},
                SEQUENCE_BESIDE: "scene kind: a large object with a small one beside it, then another object (or reversed)",
            },
        }


def choose_heldout(rng: np.random.Generator, n: int) -> tuple[tuple[str, str], ...]:
    """n (colour, shape) pairs with distinct colours and distinct shapes, so every colour and every
    shape still appears in training (only the combination is new)."""
    n = min(n, len(SHAPES), len(COLOURS))
    colours = rng.permutation(list(COLOURS))[:n]
    shapes = rng.permutation(list(SHAPES))[:n]
    return tuple(sorted((str(c), str(s)) for c, s in zip(colours, shapes)))


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) video counts; val/test get at least one video each once n >= 3."""
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    return n_train, n_val, n - n_train - n_val


def sample_world(config: WorldConfig) -> World:
    """All scenes for `config`: train, then val, then test (with near-duplicate groups)."""
    if config.videos < 1:
        raise ValueError("videos must be >= 1")
    rng = np.random.default_rng(config.seed)
    heldout = choose_heldout(rng, config.heldout_pairs)
    sampler = _Sampler(rng, config, set(heldout))
    n_train, n_val, n_test = split_sizes(config.videos, config.val_fraction, config.test_fraction)
    scenes: list[Scene] = []
    for split, n in (("train", n_train), ("val", n_val)):
        scenes.extend(sampler.scene(split, sampler.kind()) for _ in range(n))
    scenes.extend(sampler.test_scenes(n_test))
    named = [replace(s, video_id=f"v{i:06d}") for i, s in enumerate(scenes)]
    return World(config, heldout, tuple(named))


class _Sampler:
    """Draws scenes from one generator; owns no state beyond it and the group counter."""

    def __init__(self, rng: np.random.Generator, config: WorldConfig, heldout: set[tuple[str, str]]) -> None:
        self.rng = rng
        self.config = config
        self.heldout = heldout
        self.allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in heldout]
        self.n_groups = 0

    # ---- small draws -------------------------------------------------------------------------
    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def kind(self) -> str:
        if self.config.group_size == 4 and self.rng.random() < self.config.sequence_beside_weight:
            return SEQUENCE_BESIDE
        w = np.asarray(self.config.kind_weights, dtype=float)
        return KINDS[int(self.rng.choice(len(KINDS), p=w / w.sum()))]

    def pair(self, exclude_colours: tuple[str, ...] = (), heldout: bool = False) -> tuple[str, str]:
        pool = sorted(self.heldout) if heldout else self.allowed
        pool = [p for p in pool if p[0] not in exclude_colours] or pool
        return self.pick(pool)

    def half_size(self, size: str) -> float:
        lo, hi = HALF_SIZE[size]
        return float(self.rng.uniform(lo, hi))

    def start(self, half: float, motion: str, travel: float) -> tuple[float, float]:
        """A start centre that keeps the whole object inside the frame for the whole motion."""
        dx, dy = _DIRECTION[motion]
        xs = (half - min(0.0, dx * travel), 1 - half - max(0.0, dx * travel))
        ys = (half - min(0.0, dy * travel), 1 - half - max(0.0, dy * travel))
        return float(self.rng.uniform(*xs)), float(self.rng.uniform(*ys))

    def obj(self, pair: tuple[str, str], size: str, **window) -> ObjectSpec:
        motion = self.pick(MOTIONS)
        half = self.half_size(size)
        x0, y0 = self.start(half, motion, TRAVEL)
        return ObjectSpec(pair[0], pair[1], size, motion, half, x0, y0, TRAVEL, **window)

    def size(self, p_large: float) -> str:
        return "large" if self.rng.random() < p_large else "small"

    # ---- scenes ------------------------------------------------------------------------------
    def objects(self, kind: str, heldout: bool = False) -> tuple[ObjectSpec, ...]:
        if kind == "single":
            return (self.obj(self.pair(heldout=heldout), self.size(0.7)),)
        if kind == "sequence":
            a = self.pair(heldout=heldout)
            b = self.pair(exclude_colours=(a[0],))
            first = self.obj(a, self.size(0.7), t_start=0.0, t_end=0.5)
            second = self.obj(b, self.size(0.7), t_start=0.5, t_end=1.0)
            if self.rng.random() < 0.5:  # the held-out object (if any) comes second
                first, second = replace(second, t_start=0.0, t_end=0.5), replace(first, t_start=0.5, t_end=1.0)
            return (first, second)
        if kind == "together":
            return self.together(heldout)
        if kind == "beside":
            return self.beside()
        if kind == SEQUENCE_BESIDE:
            return self.sequence_beside(heldout)
        raise ValueError(kind)

    def sequence_beside(self, heldout: bool) -> tuple[ObjectSpec, ...]:
        """(large, small, other): the large+small pair in one half of the clip, the other object in the
        other half; which comes first is random. A held-out pair, if any, is the other object."""
        large, small = self.beside()
        other_pair = self.pair(exclude_colours=(large.colour,), heldout=heldout)
        other = self.obj(other_pair, self.size(0.7))
        if self.rng.random() < 0.5:
            return (*_window((large, small), 0.0, 0.5), *_window((other,), 0.5, 1.0))
        return (*_window((large, small), 0.5, 1.0), *_window((other,), 0.0, 0.5))

    def together(self, heldout: bool) -> tuple[ObjectSpec, ...]:
        """Two objects on screen at once whose paths never overlap (rejection sampling)."""
        a_pair = self.pair(heldout=heldout)
        b_pair = self.pair(exclude_colours=(a_pair[0],))
        p_large = 0.5
        for attempt in range(200):
            if attempt == 100:
                p_large = 0.0  # two large shapes crossing paths may not fit: fall back to small ones
            a, b = self.obj(a_pair, self.size(p_large)), self.obj(b_pair, self.size(p_large))
            if _apart(a, b):
                return (a, b)
        raise RuntimeError("could not place two non-overlapping objects")  # pragma: no cover

    def beside(self, small_pair: tuple[str, str] | None = None) -> tuple[ObjectSpec, ...]:
        """A large object with a small one next to it (left or right); both move together."""
        large_pair = self.pair()
        small_pair = small_pair or self.pair(exclude_colours=(large_pair[0],))
        motion = self.pick(MOTIONS)
        big, small = self.half_size("large"), self.half_size("small")
        gap = 0.03
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        offset = side * (big + gap + small)
        travel = 0.2 if motion in ("left", "right") else TRAVEL  # the pair is wide; keep it in frame
        group_lo, group_hi = min(-big, offset - small), max(big, offset + small)
        dx, dy = _DIRECTION[motion]
        x_rng = (-group_lo - min(0.0, dx * travel), 1 - group_hi - max(0.0, dx * travel))
        y_rng = (big - min(0.0, dy * travel), 1 - big - max(0.0, dy * travel))
        x0, y0 = float(self.rng.uniform(*x_rng)), float(self.rng.uniform(*y_rng))
        large = ObjectSpec(large_pair[0], large_pair[1], "large", motion, big, x0, y0, travel)
        small_obj = ObjectSpec(small_pair[0], small_pair[1], "small", motion, small, x0 + offset, y0, travel)
        return (large, small_obj)

    def scene(self, split: str, kind: str, heldout: bool = False, sound: str | None = None) -> Scene:
        rng = self.rng
        objects = self.objects(kind, heldout=heldout)
        sound = sound or self.pick(SOUNDS)
        ext, vcodec = ".mp4", None
        if rng.random() < self.config.other_container_fraction:
            ext = self.pick([".webm", ".mkv"])
            vcodec = self.pick(["libx264", "ffv1"]) if ext == ".mkv" else None
        grey = int(rng.integers(70, 121))
        tint = rng.integers(-8, 9, size=3)
        angle = float(rng.uniform(0, 2 * math.pi))
        amp = float(rng.uniform(0, 20))
        return Scene(
            video_id="",
            kind=kind,
            objects=objects,
            sound=sound,
            split=split,
            tags=("heldout",) if heldout else (),
            audio_stream=not (sound == "silence" and rng.random() < self.config.silent_without_stream),
            extension=ext,
            video_codec=vcodec,
            background=tuple(int(np.clip(grey + t, 0, 255)) for t in tint),
            gradient=(amp * math.cos(angle), amp * math.sin(angle)),
            beep_hz=float(rng.uniform(700, 1300)),
            hum_hz=float(rng.uniform(90, 150)),
            noise_seed=int(rng.integers(2**31)),
            caption_seed=int(rng.integers(2**31)),
        )

    def test_scenes(self, n: int) -> list[Scene]:
        """Near-duplicate pairs, held-out scenes and plain scenes: `n` test videos in proportions
        fixed by quotas (not by chance, so small test splits still cover every distinction).
        With group_size 4: n // 4 groups of four (every other one held out), the rest plain scenes."""
        out: list[Scene] = []
        if self.config.group_size == 4:
            for g in range(n // 4):
                out.extend(self.group_of_four(heldout=g % 2 == 1))
            out.extend(self.scene("test", self.kind()) for _ in range(n % 4))
            return out
        for recipe in self.rng.permutation(quota_recipes(n, self.config.test_weights)):
            if recipe in ("order", "sound", "small"):
                out.extend(self.pair_of(str(recipe)))
            elif recipe == "heldout":
                out.append(self.scene("test", self.pick(("single", "sequence", "together")), heldout=True))
            else:
                out.append(self.scene("test", self.kind()))
        return out

    def pair_of(self, distinction: str) -> list[Scene]:
        """A test scene and its near-duplicate, differing only in `distinction`."""
        group = f"g{self.n_groups:05d}"
        self.n_groups += 1
        if distinction == "order":
            a = self.scene("test", "sequence")
            first, second = a.objects
            swapped = (replace(second, t_start=0.0, t_end=0.5), replace(first, t_start=0.5, t_end=1.0))
            b = replace(a, objects=swapped)
        elif distinction == "sound":
            a = self.scene("test", self.kind())
            other = self.pick([s for s in SOUNDS if s != a.sound])
            b = replace(a, sound=other, audio_stream=True)
        else:  # small
            a = self.scene("test", "beside")
            large, small = a.objects
            b_pair = self._changed_small(large, small)
            b = replace(a, objects=(large, replace(small, colour=b_pair[0], shape=b_pair[1])))
        b = replace(b, caption_seed=int(self.rng.integers(2**31)), noise_seed=a.noise_seed)
        tags = (distinction,)
        return [replace(a, tags=tags, group=group), replace(b, tags=tags, group=group)]

    def group_of_four(self, heldout: bool) -> list[Scene]:
        """A base scene and three near-duplicates, each differing from it in one thing: the order of
        its two halves, its sound, or the small object's colour/shape."""
        group = f"g{self.n_groups:05d}"
        self.n_groups += 1
        base = self.scene("test", SEQUENCE_BESIDE, heldout=heldout)
        large, small, other = base.objects
        pair_window = (large.t_start, large.t_end)
        swapped = (*_window((large, small), other.t_start, other.t_end), *_window((other,), *pair_window))
        sound = self.pick([x for x in SOUNDS if x != base.sound])
        b_pair = self._changed_small(large, small)
        variants = {
            "order": replace(base, objects=swapped),
            "sound": replace(base, sound=sound, audio_stream=True),
            "small": replace(base, objects=(large, replace(small, colour=b_pair[0], shape=b_pair[1]), other)),
        }
        extra = ("heldout",) if heldout else ()
        out = [replace(base, tags=("base", *extra), group=group)]
        for name, scene in variants.items():
            seed = int(self.rng.integers(2**31))
            out.append(replace(scene, tags=(name, *extra), group=group, caption_seed=seed, noise_seed=base.noise_seed))
        return out

    def _changed_small(self, large: ObjectSpec, small: ObjectSpec) -> tuple[str, str]:
        """Change the small object's colour, its shape, or both (never to the large one's colour)."""
        options = [
            p for p in self.allowed
            if p != small.pair and p[0] != large.colour
        ]
        what = self.pick(("colour", "shape", "both"))
        if what == "colour":
            narrowed = [p for p in options if p[1] == small.shape]
        elif what == "shape":
            narrowed = [p for p in options if p[0] == small.colour]
        else:
            narrowed = [p for p in options if p[0] != small.colour and p[1] != small.shape]
        return self.pick(narrowed or options)


def _window(objects: tuple[ObjectSpec, ...], start: float, end: float) -> tuple[ObjectSpec, ...]:
    return tuple(replace(o, t_start=start, t_end=end) for o in objects)


def quota_recipes(n: int, weights: tuple[float, ...]) -> list[str]:
    """Recipes for `n` test videos: pairs ("order", "sound", "small") take two videos, "heldout" and
    "plain" one. Counts follow `weights` (shares of videos) by largest remainder."""
    names = ("order", "sound", "small", "heldout", "plain")
    w = np.asarray(weights, dtype=float)
    share = n * w / w.sum()
    videos = np.floor(share).astype(int)
    for i in np.argsort(-(share - videos), kind="stable")[: n - int(videos.sum())]:
        videos[i] += 1
    recipes: list[str] = []
    for i, name in enumerate(names[:3]):
        recipes += [name] * int(videos[i] // 2)
        videos[4] += videos[i] % 2  # an odd video left over becomes a plain one
    recipes += ["heldout"] * int(videos[3]) + ["plain"] * int(videos[4])
    return recipes


def _apart(a: ObjectSpec, b: ObjectSpec, margin: float = 0.03) -> bool:
    """Whether two simultaneously visible objects stay separated along their whole paths."""
    progress = np.linspace(0.0, 1.0, 9)
    ax, ay = a.centre(progress)
    bx, by = b.centre(progress)
    # squares/crosses reach ~1.2x the half-size at their corners; compare box extents
    reach = 1.2 * (a.half_size + b.half_size) + margin
    return bool(np.all((np.abs(ax - bx) > reach) | (np.abs(ay - by) > reach)))
