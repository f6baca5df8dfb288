"""Synthetic "shapes" grounding world: scenes, referring expressions and dataset splits.

The names below load on first use (PEP 562), so `python -m boxguard.demo.dataset` runs its
module once, without the package having imported it already.

Example:
    >>> from boxguard.demo import SHAPES
    >>> "circle" in SHAPES
    True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "dataset": ("SPLITS", "build_split", "demo_scene", "iter_samples", "iter_scenes", "scene_rng"),
    "expressions": ("Sample", "candidates", "generate_expressions", "make_sample"),
    "scenes": (
        "Background",
        "Scene",
        "SceneObject",
        "generate_scene",
        "make_object",
        "object_mask",
        "render_scene",
    ),
    "vocab": ("COLOR_RGB", "COLORS", "ORDINALS", "RELATIONS", "SHAPES", "SIZES"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first access."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes plus the lazily loaded exports."""
    return sorted({*globals(), *__all__})
