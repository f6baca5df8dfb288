"""Independent, deliberately simple resolver for generated expressions (test helper)."""

from __future__ import annotations

import re

from boxguard.demo import COLORS, ORDINALS, RELATIONS, SHAPES, SIZES, Scene

_C = "|".join(COLORS)
_S = "|".join(SHAPES)
_R = "|".join(RELATIONS)
_O = "|".join(ORDINALS)
_Z = "|".join(SIZES)
RELATION_RE = re.compile(rf"^the ({_C}) ({_S}) ({_R}) the ({_C}) ({_S})$")
SIZE_RE = re.compile(rf"^the ({_Z}) ({_C}) ({_S})$")
ORDINAL_RE = re.compile(rf"^the ({_O}) ({_S})$")
PLAIN_RE = re.compile(rf"^the ({_C}) ({_S})$")
MARGIN_FRAC = 0.06


def _center(box: tuple[int, int, int, int]) -> tuple[float, float]:
    """Centre of an exclusive-edge box."""
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def resolve(scene: Scene, expression: str) -> list[int] | None:
    """Indices of objects the expression refers to; None when the expression is ill-posed."""
    objs = scene.objects
    margin = MARGIN_FRAC * min(scene.width, scene.height)

    def of_class(color: str, shape: str) -> list[int]:
        return [i for i, o in enumerate(objs) if o.color == color and o.shape == shape]

    if m := RELATION_RE.match(expression):
        color, shape, rel, acolor, ashape = m.groups()
        anchors = of_class(acolor, ashape)
        if len(anchors) != 1:
            return None
        ax, ay = _center(objs[anchors[0]].bbox)
        out = []
        for i in of_class(color, shape):
            x, y = _center(objs[i].bbox)
            delta = {"left of": ax - x, "right of": x - ax, "above": ay - y, "below": y - ay}[rel]
            if delta > margin:
                out.append(i)
        return out
    if m := SIZE_RE.match(expression):
        size, color, shape = m.groups()
        same = of_class(color, shape)
        if not same:
            return []
        side = {
            i: max(objs[i].bbox[2] - objs[i].bbox[0], objs[i].bbox[3] - objs[i].bbox[1])
            for i in same
        }
        big, small = max(side.values()), min(side.values())
        if len(same) < 2 or big < 1.45 * small:  # sizes must clearly differ
            return None
        pick = [i for i in same if (side[i] >= 1.45 * small) == (size == "large")]
        return pick
    if m := ORDINAL_RE.match(expression):
        ordinal, shape = m.groups()
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        if len(idx) < 2:
            return None
        sign, axis = {
            "leftmost": (-1, 0),
            "rightmost": (1, 0),
            "topmost": (-1, 1),
            "bottom-most": (1, 1),
        }[ordinal]
        vals = sorted(((sign * _center(objs[i].bbox)[axis], i) for i in idx), reverse=True)
        if vals[0][0] - vals[1][0] <= margin:
            return None
        return [vals[0][1]]
    if m := PLAIN_RE.match(expression):
        return of_class(*m.groups())
    return None
