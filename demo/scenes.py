"""Scene model, random scene generation and rendering for the synthetic shapes world."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .vocab import (
    BACKGROUND_MIN,
    COLOR_JITTER,
    COLOR_RGB,
    COLORS,
    MAX_ASPECT,
    MAX_SIDE,
    MIN_SIDE,
    SHAPES,
    SIZE_RANGES,
)

BBox = tuple[int, int, int, int]

_EDGE_MARGIN = 8  # min distance (px) between a shape's nominal box and the image border
_GAP_FRAC = 0.03  # min gap between nominal boxes of two shapes, fraction of min side
_PAD = 3  # padding (px) of the raster patch around a shape's nominal box
_PLACE_TRIES = 60
_STAR_INNER = 0.19  # inner radius of the star at diameter 1 (outer radius 0.5)


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """Vertices of ``shape`` scaled to a nominal diameter of 1, centred on its own box."""
    if shape == "square":
        h = 0.43
        pts = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":
        pts = [(0.0, -0.5), (0.5, 0.5 * math.sqrt(3) - 0.5), (-0.5, 0.5 * math.sqrt(3) - 0.5)]
    elif shape == "star":
        pts = []
        for k in range(10):
            r = 0.5 if k % 2 == 0 else _STAR_INNER
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
    elif shape == "hexagon":
        pts = [(0.5 * math.cos(k * math.pi / 3), 0.5 * math.sin(k * math.pi / 3)) for k in range(6)]
    else:
        raise ValueError(f"not a polygon shape: {shape!r}")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return [(x - mx, y - my) for x, y in pts]


_UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    s: _unit_polygon(s) for s in SHAPES if s != "circle"
}


def _unit_extent(shape: str) -> tuple[float, float]:
    """Nominal (width, height) of ``shape`` at diameter 1."""
    if shape == "circle":
        return 1.0, 1.0
    pts = _UNIT_POLYGONS[shape]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return max(xs) - min(xs), max(ys) - min(ys)


_UNIT_EXTENTS: dict[str, tuple[float, float]] = {s: _unit_extent(s) for s in SHAPES}


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape: vocabulary attributes, geometry and its tight pixel bbox."""

    shape: str
    color: str
    size: str  # "small" | "large"
    cx: float  # nominal centre (px)
    cy: float
    diameter: float  # nominal diameter (px)
    rgb: tuple[int, int, int]
    bbox: BBox  # tight extent of drawn pixels: [x1, y1, x2, y2), exclusive right/bottom

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the tight bbox."""
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def name(self) -> str:
        """ "{color} {shape}", e.g. "red circle"."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Background:
    """Light background: plain colour, two-colour gradient, plain plus faint noise, or stripes."""

    kind: str  # "plain" | "gradient" | "noise" | "stripes"
    base: tuple[int, int, int]
    other: tuple[int, int, int] = (255, 255, 255)  # gradient end colour, second stripe colour
    direction: str = "x"  # gradient / stripe axis: "x" | "y"
    noise_seed: int = 0
    noise_amp: int = 0
    band: int = 0  # stripe width (px)


@dataclass(frozen=True)
class SceneStyle:
    """Ranges of one scene distribution: image sides, shape sizes, background kinds and tint."""

    min_side: int = MIN_SIDE
    max_side: int = MAX_SIDE
    small: tuple[float, float] = SIZE_RANGES["small"]  # diameter / min side
    large: tuple[float, float] = SIZE_RANGES["large"]
    backgrounds: tuple[str, ...] = ("plain", "gradient", "noise")
    background_weights: tuple[float, ...] = (0.4, 0.3, 0.3)
    tint: int = 0  # a light background channel may sit this much lower (pastel tints)

    def size_range(self, size: str) -> tuple[float, float]:
        """Diameter range (fraction of the min side) of a "small" or "large" shape."""
        return self.small if size == "small" else self.large


# The training distribution, and a second one training never sees (evaluation only): larger
# images, smaller shapes, pastel-tinted plain and striped backgrounds.
TRAIN_STYLE = SceneStyle()
SHIFTED_STYLE = SceneStyle(
    min_side=320,
    max_side=640,
    small=(0.09, 0.13),
    large=(0.22, 0.27),
    backgrounds=("plain", "stripes"),
    background_weights=(0.5, 0.5),
    tint=30,
)


@dataclass(frozen=True)
class Scene:
    """A full scene description; ``render_scene`` turns it into pixels deterministically."""

    width: int
    height: int
    background: Background
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)


def shape_patch(shape: str, cx: float, cy: float, diameter: float) -> tuple[int, int, Image.Image]:
    """Rasterise one shape into an "L" mask patch; returns (origin x, origin y, patch)."""
    w, h = _UNIT_EXTENTS[shape]
    ox = math.floor(cx - diameter * w / 2) - _PAD
    oy = math.floor(cy - diameter * h / 2) - _PAD
    pw = math.ceil(diameter * w) + 2 * _PAD + 2
    ph = math.ceil(diameter * h) + 2 * _PAD + 2
    patch = Image.new("L", (pw, ph), 0)
    draw = ImageDraw.Draw(patch)
    lx, ly = cx - ox, cy - oy
    if shape == "circle":
        r = diameter / 2
        draw.ellipse((lx - r, ly - r, lx + r, ly + r), fill=255)
    else:
        draw.polygon(
            [(lx + x * diameter, ly + y * diameter) for x, y in _UNIT_POLYGONS[shape]], fill=255
        )
    return ox, oy, patch


def make_object(
    shape: str,
    color: str,
    size: str,
    cx: float,
    cy: float,
    diameter: float,
    rgb: tuple[int, int, int] | None = None,
) -> SceneObject:
    """Build a ``SceneObject`` whose bbox is measured from its rasterised mask."""
    ox, oy, patch = shape_patch(shape, cx, cy, diameter)
    box = patch.getbbox()
    if box is None:
        raise ValueError("shape rasterised to zero pixels")
    bbox = (ox + box[0], oy + box[1], ox + box[2], oy + box[3])
    return SceneObject(shape, color, size, cx, cy, diameter, rgb or COLOR_RGB[color], bbox)


def object_mask(obj: SceneObject, width: int, height: int) -> np.ndarray:
    """Boolean (height, width) mask of the pixels ``obj`` covers in a full-size image."""
    ox, oy, patch = shape_patch(obj.shape, obj.cx, obj.cy, obj.diameter)
    canvas = Image.new("L", (width, height), 0)
    canvas.paste(patch, (ox, oy))
    return np.asarray(canvas) > 0


def render_background(bg: Background, width: int, height: int) -> Image.Image:
    """Render the background alone (no full-size float arrays, for speed)."""
    if bg.kind == "gradient":
        n = width if bg.direction == "x" else height
        t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
        a, b = np.asarray(bg.base, np.float32), np.asarray(bg.other, np.float32)
        ramp = np.clip(a[None, :] * (1 - t) + b[None, :] * t, BACKGROUND_MIN, 255).astype(np.uint8)
        arr = ramp[None, :, :] if bg.direction == "x" else ramp[:, None, :]
        arr = np.ascontiguousarray(np.broadcast_to(arr, (height, width, 3)))
        return Image.fromarray(arr, "RGB")
    base = tuple(min(255, max(BACKGROUND_MIN, c)) for c in bg.base)
    if bg.kind == "noise" and bg.noise_amp > 0:
        nrng = np.random.default_rng(bg.noise_seed)
        noise = nrng.integers(-bg.noise_amp, bg.noise_amp + 1, (height, width, 1), dtype=np.int16)
        arr = np.clip(noise + np.asarray(base, np.int16), BACKGROUND_MIN, 255).astype(np.uint8)
        return Image.fromarray(arr, "RGB")
    if bg.kind == "stripes" and bg.band > 0:
        n = width if bg.direction == "x" else height
        pick = (np.arange(n) // bg.band) % 2
        colors = np.asarray([bg.base, bg.other], np.uint8).clip(BACKGROUND_MIN, 255)
        ramp = colors[pick]
        arr = ramp[None, :, :] if bg.direction == "x" else ramp[:, None, :]
        return Image.fromarray(np.ascontiguousarray(np.broadcast_to(arr, (height, width, 3))))
    return Image.new("RGB", (width, height), base)


def render_scene(scene: Scene) -> Image.Image:
    """Render ``scene`` to an RGB image (deterministic; no randomness involved)."""
    img = render_background(scene.background, scene.width, scene.height)
    for obj in scene.objects:
        ox, oy, patch = shape_patch(obj.shape, obj.cx, obj.cy, obj.diameter)
        img.paste(obj.rgb, (ox, oy, ox + patch.width, oy + patch.height), mask=patch)
    return img


def random_background(rng: random.Random, style: SceneStyle = TRAIN_STYLE) -> Background:
    """Draw a light background of one of the style's kinds."""

    def light() -> tuple[int, int, int]:
        lvl = rng.randint(222, 252)
        r, g, b = (min(255, max(BACKGROUND_MIN, lvl + rng.randint(-6, 6))) for _ in range(3))
        if style.tint:  # lower one channel: a pastel tint, still >= BACKGROUND_MIN
            k = rng.randrange(3)
            tinted = [r, g, b]
            tinted[k] = max(BACKGROUND_MIN, tinted[k] - rng.randint(style.tint // 2, style.tint))
            r, g, b = tinted
        return r, g, b

    kind = rng.choices(style.backgrounds, weights=style.background_weights)[0]
    if kind == "stripes":
        return Background(
            "stripes", light(), light(), rng.choice(("x", "y")), band=rng.randint(6, 24)
        )
    if kind == "gradient":
        return Background("gradient", light(), light(), rng.choice(("x", "y")))
    if kind == "noise":
        return Background(
            "noise", light(), noise_seed=rng.getrandbits(32), noise_amp=rng.randint(3, 9)
        )
    return Background("plain", light())


def random_size(
    rng: random.Random, fixed_size: tuple[int, int] | None = None, style: SceneStyle = TRAIN_STYLE
) -> tuple[int, int]:
    """Image (width, height): sides in the style's range (224-512 for training) with aspect
    ratio <= 1.8, or ``fixed_size``."""
    if fixed_size is not None:
        return int(fixed_size[0]), int(fixed_size[1])
    while True:
        w = rng.randint(style.min_side, style.max_side)
        h = rng.randint(style.min_side, style.max_side)
        if max(w, h) / min(w, h) <= MAX_ASPECT:
            return w, h


def _jitter_rgb(rng: random.Random, color: str) -> tuple[int, int, int]:
    """Canonical colour plus a tiny per-channel jitter."""
    r, g, b = (
        min(255, max(0, c + rng.randint(-COLOR_JITTER, COLOR_JITTER))) for c in COLOR_RGB[color]
    )
    return r, g, b


def _plan_objects(rng: random.Random, n: int, p_large: float) -> list[tuple[str, str, str]]:
    """Choose (shape, color, size) triples, deliberately including same-class distractors."""
    plan: list[tuple[str, str, str]] = []
    for i in range(n):
        size = "large" if rng.random() < p_large else "small"
        if i == 0 or rng.random() < 0.35:
            plan.append((rng.choice(SHAPES), rng.choice(COLORS), size))
            continue
        shape, color, bsize = rng.choice(plan)
        kind = rng.choices(("same_shape", "same_class", "same_color"), weights=(45, 35, 20))[0]
        if kind == "same_shape":
            color = rng.choice([c for c in COLORS if c != color])
        elif kind == "same_class":
            size = ("small" if bsize == "large" else "large") if rng.random() < 0.7 else size
        else:
            shape = rng.choice([s for s in SHAPES if s != shape])
        plan.append((shape, color, size))
    return plan


def _fits(box: tuple[float, float, float, float], boxes: list, gap: float) -> bool:
    """True when ``box`` keeps at least ``gap`` px from every box in ``boxes``."""
    x1, y1, x2, y2 = box
    return all(
        x2 + gap <= b[0] or b[2] + gap <= x1 or y2 + gap <= b[1] or b[3] + gap <= y1 for b in boxes
    )


def generate_scene(
    rng: random.Random,
    *,
    min_objects: int = 1,
    max_objects: int = 6,
    fixed_size: tuple[int, int] | None = None,
    p_large: float = 0.4,
    style: SceneStyle = TRAIN_STYLE,
) -> Scene:
    """Draw a random scene with ``min_objects``..``max_objects`` non-overlapping shapes."""
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects")
    width, height = random_size(rng, fixed_size, style)
    side = min(width, height)
    gap = max(4.0, _GAP_FRAC * side)
    n = rng.randint(min_objects, max_objects)
    plan = _plan_objects(rng, n, p_large)
    # Place large shapes first: far easier to pack.
    order = sorted(range(n), key=lambda k: plan[k][2] != "large")
    boxes: list[tuple[float, float, float, float]] = []
    objects: list[SceneObject] = []
    for k in order:
        shape, color, size = plan[k]
        for sz in (size, "small") if size == "large" else (size,):
            lo, hi = style.size_range(sz)
            d = rng.uniform(lo, hi) * side
            uw, uh = _UNIT_EXTENTS[shape]
            hw, hh = d * uw / 2 + 1, d * uh / 2 + 1
            if 2 * hw + 2 * _EDGE_MARGIN > width or 2 * hh + 2 * _EDGE_MARGIN > height:
                continue
            placed = False
            for _ in range(_PLACE_TRIES):
                cx = rng.uniform(_EDGE_MARGIN + hw, width - _EDGE_MARGIN - hw)
                cy = rng.uniform(_EDGE_MARGIN + hh, height - _EDGE_MARGIN - hh)
                box = (cx - hw, cy - hh, cx + hw, cy + hh)
                if _fits(box, boxes, gap):
                    boxes.append(box)
                    objects.append(
                        make_object(shape, color, sz, cx, cy, d, _jitter_rgb(rng, color))
                    )
                    placed = True
                    break
            if placed:
                break
    if len(objects) < min_objects:  # packing failed: retry with fresh draws from the same rng
        return generate_scene(
            rng,
            min_objects=min_objects,
            max_objects=max_objects,
            fixed_size=fixed_size,
            p_large=p_large,
            style=style,
        )
    rng.shuffle(objects)
    return Scene(width, height, random_background(rng, style), tuple(objects))


__all__ = [
    "SHIFTED_STYLE",
    "TRAIN_STYLE",
    "BBox",
    "Background",
    "Scene",
    "SceneObject",
    "SceneStyle",
    "generate_scene",
    "make_object",
    "object_mask",
    "random_background",
    "random_size",
    "render_background",
    "render_scene",
    "shape_patch",
]
