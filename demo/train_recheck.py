"""Training rows for the visual re-check: the exact crop and yes/no question the server sends.

The server's ``visual_check`` crops each answered box with the policy's margin
(``guards.visual.margined``), resizes the crop through the adapter and asks
``question_for(expression)`` under a ``yes|no`` constraint (``server.evidence.crop_request``).
These rows are built by the same functions, so what is trained is what is asked. A crop is
"yes" when it covers the named object at IoU >= 0.5 (what the evaluation calls right); crops of
other objects that the question cannot tell apart from the target (another circle for "the
leftmost circle") are not used.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from boxguard.guards.geometry import clamp, iou
from boxguard.guards.policy import Policy
from boxguard.guards.threshold import auroc
from boxguard.guards.visual import CropQuestion, margined, question_for
from boxguard.server.evidence import crop_request
from PIL import Image

from .dataset import scene_rng
from .expressions import Sample, generate_expressions
from .scenes import Scene, SceneObject, generate_scene, render_scene
from .train_data import IGNORE, DataSpec, Encoder, Example, Question, model_inputs
from .vocab import COLORS, SHAPES

BBox = tuple[float, float, float, float]
RIGHT_IOU = 0.5  # a box is right at IoU >= this with the target (the evaluation's rule)
AMBIGUOUS_IOU = 0.3  # a crop this close to a non-target the question also fits is not used
DEFAULT_MARGIN = Policy().visual_margin
# Negative kinds and their weights when the target is present.
NEGATIVE_KINDS = {
    "other": 0.3,
    "background": 0.2,
    "shifted": 0.15,
    "part": 0.1,
    "between": 0.1,
    "enlarged": 0.15,
}


@dataclass(frozen=True)
class CropCase:
    """One re-check question: the answer box (original pixels) and whether it is right."""

    expression: str
    bbox: BBox
    yes: bool
    kind: str


def as_box(bbox: tuple[int, int, int, int] | list[int]) -> BBox:
    """An integer scene box as a float BBox."""
    x1, y1, x2, y2 = bbox
    return float(x1), float(y1), float(x2), float(y2)


def named_attributes(expression: str) -> tuple[str | None, str | None]:
    """(color, shape) the re-check question names, each None when it names none."""
    words = question_for(expression).lower().rstrip("?").split()
    color = next((w for w in words if w in COLORS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return color, shape


def fits_question(obj: SceneObject, expression: str) -> bool:
    """Whether the re-check question could truthfully be answered yes for this object alone."""
    color, shape = named_attributes(expression)
    return (color is None or obj.color == color) and (shape is None or obj.shape == shape)


def jitter(rng: random.Random, box: BBox, size: tuple[int, int], lo: float, hi: float) -> BBox:
    """A box near `box` with IoU in [lo, hi] to it (the box itself after 30 misses)."""
    w, h = box[2] - box[0], box[3] - box[1]
    for _ in range(30):
        s = rng.uniform(0.02, 0.3)
        cand = clamp(
            (
                box[0] + rng.gauss(0, s) * w,
                box[1] + rng.gauss(0, s) * h,
                box[2] + rng.gauss(0, s) * w,
                box[3] + rng.gauss(0, s) * h,
            ),
            size,
        )
        if cand[2] - cand[0] >= 4 and cand[3] - cand[1] >= 4 and lo <= iou(cand, box) <= hi:
            return cand
    return box


def _negative_box(
    rng: random.Random, kind: str, scene: Scene, target: BBox | None, others: list[SceneObject]
) -> BBox | None:
    """A candidate wrong box of the given kind (None when the scene cannot make one)."""
    size = (scene.width, scene.height)
    side = min(size)
    if kind == "other":
        if not others:
            return None
        return jitter(rng, as_box(rng.choice(others).bbox), size, 0.6, 1.0)
    if kind == "background" or target is None:
        d = rng.uniform(0.08, 0.4) * side
        x, y = rng.uniform(0, scene.width - d), rng.uniform(0, scene.height - d)
        return clamp((x, y, x + d * rng.uniform(0.7, 1.4), y + d * rng.uniform(0.7, 1.4)), size)
    w, h = target[2] - target[0], target[3] - target[1]
    cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
    if kind == "shifted":
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 1.3)
        cx, cy = cx + math.cos(angle) * dist * w, cy + math.sin(angle) * dist * h
        return clamp((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), size)
    if kind == "part":
        f = rng.uniform(0.2, 0.48)
        side_name = rng.choice("lrtb")
        x1, y1, x2, y2 = target
        if side_name == "l":
            return (x1, y1, x1 + f * w, y2)
        if side_name == "r":
            return (x2 - f * w, y1, x2, y2)
        if side_name == "t":
            return (x1, y1, x2, y1 + f * h)
        return (x1, y2 - f * h, x2, y2)
    if kind == "between":
        if not others:
            return None
        o = rng.choice(others).bbox
        ox, oy = (o[0] + o[2]) / 2, (o[1] + o[3]) / 2
        t = rng.uniform(0.35, 0.65)
        mx, my = cx + t * (ox - cx), cy + t * (oy - cy)
        return clamp((mx - w / 2, my - h / 2, mx + w / 2, my + h / 2), size)
    scale = rng.uniform(1.6, 2.6)  # enlarged: the target inside a much larger box
    return clamp(
        (cx - scale * w / 2, cy - scale * h / 2, cx + scale * w / 2, cy + scale * h / 2), size
    )


def crop_cases(
    scene: Scene, sample: Sample, rng: random.Random, p_positive: float = 0.5
) -> list[CropCase]:
    """One re-check case for a sample (none when the drawn wrong box would be ambiguous)."""
    size = (scene.width, scene.height)
    target = as_box(sample.bbox) if sample.bbox is not None else None
    target_obj = scene.objects[sample.target] if sample.target is not None else None
    conflicting = [
        o for o in scene.objects if o is not target_obj and not fits_question(o, sample.expression)
    ]
    if target is not None and rng.random() < p_positive:
        box = jitter(rng, target, size, RIGHT_IOU, 1.0)
        return [CropCase(sample.expression, box, True, "right")]
    kind = rng.choices(list(NEGATIVE_KINDS), weights=list(NEGATIVE_KINDS.values()))[0]
    if target is None and kind not in ("other", "background"):
        kind = "other"
    wrong = _negative_box(rng, kind, scene, target, conflicting)
    if wrong is None or wrong[2] - wrong[0] < 4 or wrong[3] - wrong[1] < 4:
        return []
    if target is not None and iou(wrong, target) >= RIGHT_IOU:
        return [CropCase(sample.expression, wrong, True, "right")]
    # Another object the question also fits (e.g. the other circle) cannot be told apart here.
    for o in scene.objects:
        if (
            o is not target_obj
            and fits_question(o, sample.expression)
            and (iou(wrong, as_box(o.bbox)) >= AMBIGUOUS_IOU)
        ):
            return []
    return [CropCase(sample.expression, wrong, False, kind)]


def crop_row(image: Image.Image, crop: CropQuestion, yes: bool, encoder: Encoder) -> Example:
    """The request the server's visual check sends for one crop (resized to its model frame,
    yes/no prompt), with the answer it should get."""
    request = crop_request(encoder.adapter, image, crop, "train")
    assert request.image is not None
    answer = Question(crop.question, "yes" if yes else "no", None, prompt=request.prompt)
    return Example(request.image, [answer], [None])


def crop_example(
    image: Image.Image, case: CropCase, encoder: Encoder, margin: float = DEFAULT_MARGIN
) -> Example:
    """The server's visual-check row for this box: the crop with the policy's margin."""
    crop = CropQuestion(margined(case.bbox, margin, image.size), question_for(case.expression))
    return crop_row(image, crop, case.yes, encoder)


def scene_samples(
    index: int, spec: DataSpec, per_image: int
) -> tuple[Scene, list[Sample], Image.Image]:
    """Scene ``index`` of ``spec.split`` (the grounding rows' scene), ``per_image`` expressions
    of it and its image."""
    rng = scene_rng(spec.seed, spec.split, index)
    scene = generate_scene(
        rng,
        min_objects=spec.min_objects,
        max_objects=spec.max_objects,
        fixed_size=spec.fixed_size,
        p_large=spec.p_large,
    )
    samples = generate_expressions(scene, rng, per_image, spec.no_target_rate)
    return scene, samples, render_scene(scene)


def recheck_examples(
    index: int, spec: DataSpec, encoder: Encoder, per_image: int, p_positive: float = 0.5
) -> list[Example]:
    """Re-check rows from scene `index` of ``spec.split`` (its own expressions and crops)."""
    scene, samples, image = scene_samples(index, spec, per_image)
    crops = random.Random(f"boxguard-recheck/{spec.seed}/{spec.split}/{index}")
    return [
        crop_example(image, case, encoder)
        for sample in samples
        for case in crop_cases(scene, sample, crops, p_positive)
    ]


def recheck_scores(
    model: torch.nn.Module, encoder: Encoder, rows: list[Example], device: torch.device
) -> tuple[float, float]:
    """(AUROC of P(yes) for yes vs no rows, accuracy of P(yes) >= 0.5) on re-check rows."""
    probs = yes_probabilities(model, encoder, rows, device)
    truth = [ex.questions[0].answer == "yes" for ex in rows]
    right = sum((p >= 0.5) == t for p, t in zip(probs, truth, strict=True))
    return auroc(probs, truth), right / len(truth)


def yes_probabilities(
    model: torch.nn.Module,
    encoder: Encoder,
    examples: list[Example],
    device: torch.device,
    batch_size: int = 32,
) -> list[float]:
    """P(yes) of each re-check row from its first answer token, renormalized over y/n."""
    yes_id = encoder.tokenizer("yes", add_special_tokens=False)["input_ids"][0]
    no_id = encoder.tokenizer("no", add_special_tokens=False)["input_ids"][0]
    accepts_mm = "mm_token_type_ids" in model.forward.__code__.co_varnames
    probs: list[float] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = encoder.encode(examples[start : start + batch_size])
            logits = model(**model_inputs(batch, device, accepts_mm)).logits
            first = (batch["labels"] != IGNORE).int().argmax(dim=1)
            rows = torch.arange(logits.shape[0])
            pair = logits[rows, first - 1][:, [yes_id, no_id]].float()
            probs += torch.softmax(pair, dim=-1)[:, 0].tolist()
    model.train(was_training)
    return probs
