"""Unambiguous referring expressions, labels and R1-style think traces for a scene."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from .scenes import BBox, Scene, SceneObject
from .vocab import (
    COLORS,
    NO_TARGET_RATE,
    ORDINALS,
    RELATIONS,
    SHAPES,
    SIZES,
    SPATIAL_MARGIN_FRAC,
    join_list,
    phrase,
    with_article,
)

# Relative weight of each positive form when several are feasible for a scene.
FORM_WEIGHTS: dict[str, float] = {
    "color_shape": 0.25,
    "relation": 0.3,
    "size": 0.2,
    "ordinal": 0.25,
}


@dataclass(frozen=True)
class Sample:
    """One referring expression over a scene, with its answer and think trace."""

    expression: str
    target: int | None  # index into ``scene.objects``; None for no-target
    bbox: BBox | None  # tight [x1, y1, x2, y2) of the target, None for no-target
    label: str  # "{color} {shape}" of the target (of the queried, absent object if none)
    think: str  # short R1-style reasoning trace
    form: str  # one of vocab.FORMS

    def record(self, sample_id: str, image: str) -> dict[str, object]:
        """Evaluation JSONL record: {"id", "image", "expression", "bbox"}."""
        bbox = list(self.bbox) if self.bbox is not None else None
        return {"id": sample_id, "image": image, "expression": self.expression, "bbox": bbox}


def spatial_margin(scene: Scene) -> float:
    """Minimum centre offset (px) for a relation or ordinal extreme to count."""
    return SPATIAL_MARGIN_FRAC * min(scene.width, scene.height)


def relation_delta(a: SceneObject, b: SceneObject, relation: str) -> float:
    """Signed centre offset; positive when ``a`` is ``relation`` ``b`` (e.g. a left of b)."""
    (ax, ay), (bx, by) = a.center, b.center
    return {
        "left of": bx - ax,
        "right of": ax - bx,
        "above": by - ay,
        "below": ay - by,
    }[relation]


def ordinal_value(obj: SceneObject, ordinal: str) -> float:
    """Coordinate that is largest for the object most ``ordinal`` (e.g. leftmost)."""
    x, y = obj.center
    return {"leftmost": -x, "rightmost": x, "topmost": -y, "bottom-most": y}[ordinal]


def _classes(scene: Scene) -> Counter[tuple[str, str]]:
    """Count of objects per (color, shape)."""
    return Counter((o.color, o.shape) for o in scene.objects)


def candidates(scene: Scene) -> dict[str, list[tuple[str, int]]]:
    """All unambiguous positive expressions of ``scene``, grouped by form."""
    objs = scene.objects
    margin = spatial_margin(scene)
    classes = _classes(scene)
    out: dict[str, list[tuple[str, int]]] = {f: [] for f in FORM_WEIGHTS}
    for i, o in enumerate(objs):
        if classes[(o.color, o.shape)] == 1:
            out["color_shape"].append((f"the {o.color} {o.shape}", i))
            continue
        same = [p for p in objs if (p.color, p.shape) == (o.color, o.shape)]
        sizes = Counter(p.size for p in same)
        if len(sizes) == 2 and sizes[o.size] == 1:
            out["size"].append((f"the {phrase(o.color, o.shape, o.size)}", i))
    anchors = [j for j, a in enumerate(objs) if classes[(a.color, a.shape)] == 1]
    unique_rel: list[tuple[str, int]] = []
    for i, o in enumerate(objs):
        rivals = [
            p for k, p in enumerate(objs) if k != i and (p.color, p.shape) == (o.color, o.shape)
        ]
        for j in anchors:
            if j == i:
                continue
            a = objs[j]
            for rel in RELATIONS:
                if relation_delta(o, a, rel) <= margin:
                    continue
                # Rivals must be clearly not in relation (no grey zone).
                if any(relation_delta(p, a, rel) > 0 for p in rivals):
                    continue
                expr = f"the {o.color} {o.shape} {rel} the {a.color} {a.shape}"
                (out["relation"] if rivals else unique_rel).append((expr, i))
    if not out["relation"]:
        out["relation"] = unique_rel
    for shape in SHAPES:
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        if len(idx) < 2:
            continue
        for ordinal in ORDINALS:
            ranked = sorted(idx, key=lambda k: ordinal_value(objs[k], ordinal), reverse=True)
            best, second = (
                ordinal_value(objs[ranked[0]], ordinal),
                ordinal_value(objs[ranked[1]], ordinal),
            )
            if best - second > margin:
                out["ordinal"].append((f"the {ordinal} {shape}", ranked[0]))
    return out


def describe_objects(scene: Scene) -> str:
    """Left-to-right listing, e.g. "a red circle, a blue square and a green star"."""
    classes = _classes(scene)
    size_mixed = {
        key
        for key in classes
        if len({o.size for o in scene.objects if (o.color, o.shape) == key}) > 1
    }
    names = []
    for o in sorted(scene.objects, key=lambda p: p.center):
        size = o.size if (o.color, o.shape) in size_mixed else None
        names.append(with_article(phrase(o.color, o.shape, size)))
    return join_list(names)


def make_sample(
    scene: Scene, expression: str, target: int | None, form: str, absent: str | None = None
) -> Sample:
    """Assemble a ``Sample`` (label, bbox and think trace) for a given expression."""
    seen = f"I see {describe_objects(scene)}."
    if target is None:
        if absent is None:
            raise ValueError("no-target samples need the absent '{color} {shape}'")
        think = f"{seen} There is no {absent}."
        return Sample(expression, None, None, absent, think, form)
    obj = scene.objects[target]
    think = f"{seen} The target is {expression}. It is the {obj.name}."
    return Sample(expression, target, obj.bbox, obj.name, think, form)


def no_target_sample(scene: Scene, rng: random.Random) -> Sample:
    """A no-target expression naming a colour+shape absent from ``scene``."""
    classes = _classes(scene)
    present_shapes = {s for _, s in classes}
    present_colors = {c for c, _ in classes}
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in classes]
    near = [(c, s) for c, s in absent if s in present_shapes or c in present_colors]
    color, shape = rng.choice(near if near and rng.random() < 0.75 else absent)
    anchors = [o for o in scene.objects if classes[(o.color, o.shape)] == 1]
    roll = rng.random()
    if roll < 0.15 and anchors:
        a = rng.choice(anchors)
        expr = f"the {color} {shape} {rng.choice(RELATIONS)} the {a.color} {a.shape}"
    elif roll < 0.3:
        expr = f"the {phrase(color, shape, rng.choice(SIZES))}"
    else:
        expr = f"the {color} {shape}"
    return make_sample(scene, expr, None, "absent", absent=phrase(color, shape))


def positive_sample(
    scene: Scene,
    rng: random.Random,
    cands: dict[str, list[tuple[str, int]]] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> Sample | None:
    """A random unambiguous expression with a target, or None when none is feasible."""
    cands = candidates(scene) if cands is None else cands
    pools = {f: [c for c in cs if c[0] not in exclude] for f, cs in cands.items()}
    forms = [f for f, cs in pools.items() if cs]
    if not forms:
        return None
    form = rng.choices(forms, weights=[FORM_WEIGHTS[f] for f in forms])[0]
    expr, target = rng.choice(pools[form])
    return make_sample(scene, expr, target, form)


def generate_expressions(
    scene: Scene, rng: random.Random, n: int = 1, no_target_rate: float = NO_TARGET_RATE
) -> list[Sample]:
    """``n`` samples for ``scene``: about ``no_target_rate`` of them have no target."""
    cands = candidates(scene)
    out: list[Sample] = []
    used: set[str] = set()
    for _ in range(n):
        sample = None
        if rng.random() >= no_target_rate:
            sample = positive_sample(scene, rng, cands, frozenset(used))
            if sample is None:  # every feasible expression already used: allow a repeat
                sample = positive_sample(scene, rng, cands)
        if sample is None:
            sample = no_target_sample(scene, rng)
        used.add(sample.expression)
        out.append(sample)
    return out


__all__ = [
    "FORM_WEIGHTS",
    "Sample",
    "candidates",
    "describe_objects",
    "generate_expressions",
    "make_sample",
    "no_target_sample",
    "ordinal_value",
    "positive_sample",
    "relation_delta",
    "spatial_margin",
]
