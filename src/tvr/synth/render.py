"""Draw a scene's frames: anti-aliased shapes from signed distances over a lightly textured background.

Vectorised over frames ([T, H, W] arrays), so a 24-frame 64 px clip takes a few milliseconds.
"""

from __future__ import annotations

import numpy as np

from tvr.synth.world import COLOURS, ObjectSpec, Scene


def frame_times(seconds: float, fps: float) -> np.ndarray:
    """Presentation time of each frame as a fraction of the clip, in [0, 1)."""
    n = max(1, int(round(seconds * fps)))
    return np.arange(n, dtype=np.float64) / n


def render_frames(scene: Scene, size: int, seconds: float, fps: float) -> np.ndarray:
    """[T, size, size, 3] uint8 RGB frames of `scene`."""
    t = frame_times(seconds, fps)
    canvas = np.broadcast_to(background(scene, size), (len(t), size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for obj in scene.objects:
        alpha = coverage(obj, t, xx, yy, size)  # [T, H, W]
        colour = np.asarray(COLOURS[obj.colour], dtype=np.float32)
        canvas += alpha[..., None] * (colour - canvas)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def background(scene: Scene, size: int) -> np.ndarray:
    """[H, W, 3] float32: a grey with a slight tint, a soft gradient and faint fixed noise."""
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gx, gy = scene.gradient
    shade = gx * ramp[None, :] + gy * ramp[:, None]
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, 3.0, size=(size, size)).astype(np.float32)
    base = np.asarray(scene.background, dtype=np.float32)
    return base[None, None, :] + (shade + noise)[..., None]


def coverage(obj: ObjectSpec, t: np.ndarray, xx: np.ndarray, yy: np.ndarray, size: int) -> np.ndarray:
    """[T, H, W] float32 in [0, 1]: how much of each pixel the object covers in each frame."""
    visible = (t >= obj.t_start) & (t < obj.t_end)
    span = max(obj.t_end - obj.t_start, 1e-9)
    progress = np.clip((t - obj.t_start) / span, 0.0, 1.0)
    cx, cy = obj.centre(progress)
    dx = xx[None] - (cx * size).astype(np.float32)[:, None, None]
    dy = yy[None] - (cy * size).astype(np.float32)[:, None, None]
    dist = signed_distance(obj.shape, dx, dy, obj.half_size * size)
    alpha = np.clip(0.5 - dist, 0.0, 1.0)  # one-pixel anti-aliased edge
    return alpha * visible[:, None, None].astype(np.float32)


def signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Distance in pixels to the shape's edge (negative inside); exact near the edge, which is all
    the anti-aliasing needs."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r  # same area as the circle, roughly
    if shape == "cross":
        arm, half_width = 0.95 * r, 0.33 * r
        horizontal = np.maximum(np.abs(dx) - arm, np.abs(dy) - half_width)
        vertical = np.maximum(np.abs(dx) - half_width, np.abs(dy) - arm)
        return np.minimum(horizontal, vertical)
    if shape == "triangle":
        return _triangle(dx, dy, r)
    raise ValueError(f"unknown shape {shape!r}")


def _triangle(dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Upward-pointing isosceles triangle: the max of its three edges' signed half-plane distances."""
    apex, left, right = (0.0, -1.0 * r), (-1.0 * r, 0.8 * r), (1.0 * r, 0.8 * r)
    dist = None
    for (x1, y1), (x2, y2) in ((apex, right), (right, left), (left, apex)):
        ex, ey = x2 - x1, y2 - y1
        length = float(np.hypot(ex, ey))
        nx, ny = ey / length, -ex / length  # outward normal for clockwise-in-screen order
        d = (dx - x1) * nx + (dy - y1) * ny
        dist = d if dist is None else np.maximum(dist, d)
    return dist
