"""Synthetic "shapes" grounding world: scenes, referring expressions and dataset splits."""

from .dataset import SPLITS, build_split, demo_scene, iter_samples, iter_scenes, scene_rng
from .expressions import Sample, candidates, generate_expressions, make_sample
from .scenes import (
    Background,
    Scene,
    SceneObject,
    generate_scene,
    make_object,
    object_mask,
    render_scene,
)
from .vocab import COLOR_RGB, COLORS, ORDINALS, RELATIONS, SHAPES, SIZES

__all__ = [
    "COLORS",
    "COLOR_RGB",
    "ORDINALS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "Background",
    "Sample",
    "Scene",
    "SceneObject",
    "build_split",
    "candidates",
    "demo_scene",
    "generate_expressions",
    "generate_scene",
    "iter_samples",
    "iter_scenes",
    "make_object",
    "make_sample",
    "object_mask",
    "render_scene",
    "scene_rng",
]
