"""Scene generation and rendering: determinism, tight boxes, no overlaps, sizes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from boxguard.demo import (
    COLOR_RGB,
    COLORS,
    SHAPES,
    SIZES,
    generate_scene,
    iter_scenes,
    object_mask,
    render_scene,
)

N_SCENES = 60


@pytest.fixture(scope="module")
def scenes() -> list:
    """A batch of (scene, image) pairs from the test split."""
    return [(s, im) for s, im, _ in iter_scenes("test", 7, n_images=N_SCENES)]


def test_same_seed_same_pixels_and_scene() -> None:
    """Same seed gives identical scenes and identical image bytes."""
    a = generate_scene(random.Random(123))
    b = generate_scene(random.Random(123))
    assert a == b
    assert render_scene(a).tobytes() == render_scene(b).tobytes()
    c = generate_scene(random.Random(124))
    assert c != a


def test_image_sizes_and_object_counts(scenes: list) -> None:
    """Sides in [224, 512], moderate aspect ratio, 1-6 objects from the vocabulary."""
    for scene, image in scenes:
        assert image.size == (scene.width, scene.height)
        assert image.mode == "RGB"
        assert 224 <= scene.width <= 512 and 224 <= scene.height <= 512
        assert 1 <= len(scene.objects) <= 6
        for o in scene.objects:
            assert o.shape in SHAPES and o.color in COLORS and o.size in SIZES
    assert len({(s.width, s.height) for s, _ in scenes}) > N_SCENES // 2


def test_fixed_size_and_object_bounds() -> None:
    """``fixed_size`` and ``min_objects``/``max_objects`` are honoured."""
    rng = random.Random(5)
    for _ in range(20):
        s = generate_scene(rng, fixed_size=(320, 256), min_objects=3, max_objects=4)
        assert (s.width, s.height) == (320, 256)
        assert 3 <= len(s.objects) <= 4
        one = generate_scene(rng, min_objects=1, max_objects=1, p_large=1.0)
        assert len(one.objects) == 1 and one.objects[0].size == "large"


def test_boxes_are_tight_pixel_extents(scenes: list) -> None:
    """bbox == extent of the object's fill-colour pixels in the rendered image."""
    for scene, image in scenes:
        arr = np.asarray(image).astype(np.uint32)
        key = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
        for i, o in enumerate(scene.objects):
            hit = key == ((o.rgb[0] << 16) | (o.rgb[1] << 8) | o.rgb[2])
            for j, p in enumerate(scene.objects):  # another object may share the exact rgb
                if j != i and p.rgb == o.rgb:
                    hit[p.bbox[1] : p.bbox[3], p.bbox[0] : p.bbox[2]] = False
            ys, xs = np.nonzero(hit)
            assert len(xs) > 0
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.bbox
            x1, y1, x2, y2 = o.bbox
            assert hit[y1, x1:x2].any() and hit[y2 - 1, x1:x2].any()
            assert hit[y1:y2, x1].any() and hit[y1:y2, x2 - 1].any()
            mask = object_mask(o, scene.width, scene.height)
            assert np.array_equal(mask, hit & mask)  # mask pixels are drawn in the fill colour
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.bbox


def test_no_overlaps_and_inside_image(scenes: list) -> None:
    """Shapes lie fully inside the image and their boxes (hence masks) are disjoint."""
    for scene, _ in scenes:
        objs = scene.objects
        for o in objs:
            x1, y1, x2, y2 = o.bbox
            assert 0 < x1 < x2 < scene.width and 0 < y1 < y2 < scene.height
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                disjoint = (
                    a.bbox[2] <= b.bbox[0]
                    or b.bbox[2] <= a.bbox[0]
                    or a.bbox[3] <= b.bbox[1]
                    or b.bbox[3] <= a.bbox[1]
                )
                assert disjoint, (a, b)


def test_sizes_are_clearly_distinct_and_visible() -> None:
    """Large shapes are >= 1.6x small ones; small shapes stay >= ~28 px at 224 px."""
    smalls, larges = [], []
    for scene, _, _ in iter_scenes("train", 11, n_images=80, fixed_size=(224, 224)):
        for o in scene.objects:
            side = max(o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1])
            (larges if o.size == "large" else smalls).append((o.diameter, side))
    assert smalls and larges
    assert min(d for d, _ in larges) >= 1.6 * max(d for d, _ in smalls)
    assert min(s for _, s in smalls) >= 28


def test_background_is_light_and_colours_distinct(scenes: list) -> None:
    """Backgrounds are light; fills stay near their canonical colour."""
    for scene, image in scenes:
        arr = np.asarray(image)
        corner = arr[:4, :4].reshape(-1, 3)
        assert corner.min() >= 190
        for o in scene.objects:
            ref = COLOR_RGB[o.color]
            assert max(abs(a - b) for a, b in zip(o.rgb, ref, strict=True)) <= 8
    refs = list(COLOR_RGB.values())
    for i, a in enumerate(refs):
        for b in refs[i + 1 :]:
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) >= 50
