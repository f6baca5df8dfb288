"""Fixed vocabulary of the synthetic shapes world, plus small phrasing helpers.

Other tools (the trainer, the evaluator, the ``boxguard demo`` command) rely on these lists,
so they are part of the public contract: do not reorder or rename entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

SHAPES: Final[tuple[str, ...]] = ("circle", "square", "triangle", "star", "hexagon")
COLORS: Final[tuple[str, ...]] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: Final[tuple[str, ...]] = ("small", "large")
RELATIONS: Final[tuple[str, ...]] = ("left of", "right of", "above", "below")
ORDINALS: Final[tuple[str, ...]] = ("leftmost", "rightmost", "topmost", "bottom-most")

# Expression forms produced by the generator (``Sample.form``).
FORMS: Final[tuple[str, ...]] = ("color_shape", "relation", "size", "ordinal", "absent")

# Canonical fill colour of every colour name; objects get a tiny per-object jitter around it.
# Every entry has one channel <= 60 so no fill can ever be confused with a light background.
COLOR_RGB: Final[dict[str, tuple[int, int, int]]] = {
    "red": (215, 38, 38),
    "green": (40, 160, 60),
    "blue": (40, 85, 215),
    "yellow": (235, 200, 25),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
}

COLOR_JITTER: Final[int] = 8  # max per-channel deviation from ``COLOR_RGB``
BACKGROUND_MIN: Final[int] = 196  # every background channel stays >= this value

# Nominal object diameter as a fraction of min(width, height); large >= 1.6x small always.
SIZE_RANGES: Final[dict[str, tuple[float, float]]] = {
    "small": (0.14, 0.18),
    "large": (0.30, 0.36),
}

# Centre-offset margin (fraction of min side) for relations and ordinal extremes.
SPATIAL_MARGIN_FRAC: Final[float] = 0.06

MIN_SIDE: Final[int] = 224
MAX_SIDE: Final[int] = 512
MAX_ASPECT: Final[float] = 1.8  # longest side / shortest side

NO_TARGET_RATE: Final[float] = 0.15


def article(word: str) -> str:
    """Return the indefinite article ("a" or "an") for ``word``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def phrase(color: str, shape: str, size: str | None = None) -> str:
    """Return "{size} {color} {shape}" (size optional), e.g. "small red circle"."""
    return f"{size} {color} {shape}" if size else f"{color} {shape}"


def with_article(text: str) -> str:
    """Prefix ``text`` with its indefinite article, e.g. "an orange star"."""
    return f"{article(text)} {text}"


def join_list(items: Sequence[str]) -> str:
    """Join items as English prose: "a", "a and b", "a, b and c"."""
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(shape: str) -> str:
    """Return the plural of a shape name."""
    return shape + ("es" if shape.endswith(("x", "s")) else "s")


def is_vocab_expression_word(word: str) -> bool:
    """True when ``word`` may appear in a generated expression."""
    return word in _EXPRESSION_WORDS


def _expression_words() -> frozenset[str]:
    """All single tokens that generated expressions are built from."""
    words: set[str] = {"the"}
    for group in (SHAPES, COLORS, SIZES, ORDINALS):
        words.update(group)
    for rel in RELATIONS:
        words.update(rel.split())
    return frozenset(words)


_EXPRESSION_WORDS: Final[frozenset[str]] = _expression_words()

__all__ = [
    "BACKGROUND_MIN",
    "COLORS",
    "COLOR_JITTER",
    "COLOR_RGB",
    "FORMS",
    "MAX_ASPECT",
    "MAX_SIDE",
    "MIN_SIDE",
    "NO_TARGET_RATE",
    "ORDINALS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SIZE_RANGES",
    "SPATIAL_MARGIN_FRAC",
    "article",
    "is_vocab_expression_word",
    "join_list",
    "phrase",
    "plural",
    "with_article",
]
