"""Point-mode training rows for the visual re-check: the crop and question the server sends.

Grounding questions in point mode come from ``DataSpec.p_point`` (``train_data.make_example``:
the server's ``output="point"`` prompt answered with the truth box's centre as ``point_2d``).
This module builds the re-check rows of points. For a point the server's ``visual_check`` crops
a square of ``Policy.point_crop_frac`` times the image's shorter side centred on it
(``guards.visual.point_crop``), resizes it through the adapter and asks
``question_for(expression)`` under a ``yes|no`` constraint (``server.evidence.crop_request``);
these rows are built by the same functions. A point is right when it lies in the target's box
(the evaluation's point-in-box rule): ``yes`` for points near the box centre and jittered within
the box, ``no`` for points on other objects the question does not fit, on the background
(anywhere, or just outside the target) and every point for an absent target. A point on another
object the question also fits is not used: its crop cannot be told apart from a right one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from boxguard.guards.geometry import map_box
from boxguard.guards.policy import Policy
from boxguard.guards.visual import CropQuestion, point_crop, question_for
from PIL import Image

from .expressions import Sample
from .scenes import Scene
from .train_data import DataSpec, Encoder, Example, make_example
from .train_recheck import as_box, crop_row, fits_question, scene_samples

Point = tuple[float, float]
DEFAULT_POINT_CROP = Policy().point_crop_frac
# Wrong-point kinds and their weights when the target is present ("near": just outside its box).
POINT_NEGATIVE_KINDS = {"other": 0.4, "background": 0.3, "near": 0.3}


@dataclass(frozen=True)
class PointCase:
    """One point re-check question: the point (original pixels) and whether it is right."""

    expression: str
    point: Point
    yes: bool
    kind: str


def inside(point: Point, box: tuple[float, float, float, float]) -> bool:
    """Whether the point lies in the box, edges included (the evaluation's point-in-box)."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def served_point(point: Point, size: tuple[int, int], frame: tuple[int, int]) -> Point:
    """The point as the server sees it: written as integer frame pixels, mapped back."""
    (w, h), (fw, fh) = size, frame
    x = min(max(round(point[0] * fw / w), 0), fw)
    y = min(max(round(point[1] * fh / h), 0), fh)
    x1, y1, _, _ = map_box((x, y, x, y), "pixels", size, frame)
    return x1, y1


def _in_box(rng: random.Random, box: tuple[float, float, float, float], spread: float) -> Point:
    """A point near the box centre: uniform over the central `spread` of each side."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) * spread / 2, (box[3] - box[1]) * spread / 2
    return cx + rng.uniform(-half_w, half_w), cy + rng.uniform(-half_h, half_h)


def _wrong_point(
    rng: random.Random,
    kind: str,
    scene: Scene,
    target: tuple[float, float, float, float] | None,
    others: list[tuple[float, float, float, float]],
) -> Point | None:
    """A candidate wrong point of the given kind (None when the scene cannot make one)."""
    if kind == "other":
        return _in_box(rng, rng.choice(others), 0.6) if others else None
    if kind == "background" or target is None:
        return rng.uniform(0, scene.width), rng.uniform(0, scene.height)
    # near: outside the target box by up to half its size, in a random direction (the box's
    # edge is at dist 0.5 along the direction scaled to the unit square).
    w, h = target[2] - target[0], target[3] - target[1]
    angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.55, 1.0)
    dx, dy = math.cos(angle), math.sin(angle)
    scale = dist / max(abs(dx), abs(dy))
    x = (target[0] + target[2]) / 2 + dx * scale * w
    y = (target[1] + target[3]) / 2 + dy * scale * h
    return min(max(x, 0.0), float(scene.width)), min(max(y, 0.0), float(scene.height))


def point_cases(
    scene: Scene,
    sample: Sample,
    rng: random.Random,
    frame: tuple[int, int],
    p_positive: float = 0.5,
) -> list[PointCase]:
    """One point re-check case for a sample (none when the drawn point would be ambiguous)."""
    size = (scene.width, scene.height)
    target = as_box(sample.bbox) if sample.bbox is not None else None
    target_obj = scene.objects[sample.target] if sample.target is not None else None
    rest = [o for o in scene.objects if o is not target_obj]
    if target is not None and rng.random() < p_positive:
        # Half near the centre (where the trained answer points), half anywhere in the box.
        drawn = _in_box(rng, target, rng.choice((0.3, 0.9)))
        kind = "right"
    else:
        kind = rng.choices(list(POINT_NEGATIVE_KINDS), list(POINT_NEGATIVE_KINDS.values()))[0]
        if target is None and kind == "near":
            kind = "other"
        others = [as_box(o.bbox) for o in rest if not fits_question(o, sample.expression)]
        candidate = _wrong_point(rng, kind, scene, target, others)
        if candidate is None:
            return []
        drawn = candidate
    point = served_point(drawn, size, frame)
    if target is not None and inside(point, target):
        return [PointCase(sample.expression, point, True, "right")]
    if any(fits_question(o, sample.expression) and inside(point, as_box(o.bbox)) for o in rest):
        return []
    return [PointCase(sample.expression, point, False, kind)]


def point_crop_example(
    image: Image.Image, case: PointCase, encoder: Encoder, frac: float = DEFAULT_POINT_CROP
) -> Example:
    """The server's visual-check row for this point: the square crop centred on it."""
    crop = CropQuestion(
        point_crop(case.point[0], case.point[1], frac, image.size), question_for(case.expression)
    )
    return crop_row(image, crop, case.yes, encoder)


def point_recheck_examples(
    index: int, spec: DataSpec, encoder: Encoder, per_image: int, p_positive: float = 0.5
) -> list[Example]:
    """Point re-check rows from scene `index` of ``spec.split`` (its own expressions)."""
    scene, samples, image = scene_samples(index, spec, per_image)
    frame = encoder.adapter.model_frame(*image.size)
    points = random.Random(f"boxguard-point-recheck/{spec.seed}/{spec.split}/{index}")
    return [
        point_crop_example(image, case, encoder)
        for sample in samples
        for case in point_cases(scene, sample, points, (frame.width, frame.height), p_positive)
    ]


def point_val_sets(
    encoder: Encoder, grounding: DataSpec, recheck: DataSpec, n_recheck: int
) -> tuple[list[Example], list[Example]]:
    """Fixed val rows: 48 point questions (the val grounding questions asked in point mode,
    for the teacher-forced digit loss) and about ``n_recheck`` point re-check crops."""
    questions = [make_example(i, replace(grounding, p_point=1.0), encoder) for i in range(48)]
    crops: list[Example] = []
    index = 0
    while len(crops) < n_recheck:
        crops += point_recheck_examples(index, recheck, encoder, 4)
        index += 1
    return questions, crops
