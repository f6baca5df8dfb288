"""Referring expressions: unambiguity, no-target rate, vocabulary, labels, think traces."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from boxguard.demo import (
    COLORS,
    SHAPES,
    Sample,
    demo_scene,
    generate_expressions,
    generate_scene,
    iter_scenes,
)
from boxguard.demo.vocab import FORMS, is_vocab_expression_word
from demo_resolver import ORDINAL_RE, PLAIN_RE, RELATION_RE, SIZE_RE, resolve

N_IMAGES = 250  # x2 expressions = 500 samples


@pytest.fixture(scope="module")
def data() -> list:
    """(scene, samples) pairs with two expressions per image."""
    return [
        (s, ss) for s, _, ss in iter_scenes("val", 3, n_images=N_IMAGES, expressions_per_image=2)
    ]


def _samples(data: list) -> list:
    return [(scene, smp) for scene, ss in data for smp in ss]


def test_every_expression_resolves_to_exactly_its_target(data: list) -> None:
    """An independent resolver finds exactly the target (or nothing for no-target)."""
    for scene, smp in _samples(data):
        got = resolve(scene, smp.expression)
        assert got is not None, smp.expression
        if smp.target is None:
            assert got == [], (smp.expression, scene)
            assert smp.bbox is None
        else:
            assert got == [smp.target], (smp.expression, scene)
            assert smp.bbox == scene.objects[smp.target].bbox


def test_no_target_rate(data: list) -> None:
    """About 15% of samples have no target (8-25% over 500 samples)."""
    samples = _samples(data)
    assert len(samples) == 500
    rate = sum(s.target is None for _, s in samples) / len(samples)
    assert 0.08 <= rate <= 0.25, rate


def test_all_forms_and_same_class_distractors(data: list) -> None:
    """Every form occurs, and relation/size expressions come with same-class distractors."""
    samples = _samples(data)
    forms = Counter(s.form for _, s in samples)
    assert set(forms) == set(FORMS), forms
    distractor = 0
    for scene, s in samples:
        if s.form in ("relation", "size"):
            t = scene.objects[s.target]
            same = [o for o in scene.objects if (o.color, o.shape) == (t.color, t.shape)]
            distractor += len(same) > 1
    assert distractor >= 0.5 * (forms["relation"] + forms["size"])
    same_shape_scenes = sum(
        any(len({o.color for o in scene.objects if o.shape == sh}) > 1 for sh in SHAPES)
        for scene, _ in data
    )
    assert same_shape_scenes > N_IMAGES // 4


def test_expression_syntax_and_vocabulary(data: list) -> None:
    """Expressions use only the fixed vocabulary and one of the four templates."""
    for _, s in _samples(data):
        assert all(is_vocab_expression_word(w) for w in s.expression.split()), s.expression
        templates = (PLAIN_RE, RELATION_RE, SIZE_RE, ORDINAL_RE)
        assert any(t.match(s.expression) for t in templates), s.expression


def test_labels_and_think_traces(data: list) -> None:
    """Label is "{color} {shape}"; the trace lists objects and names the answer."""
    for scene, s in _samples(data):
        color, shape = s.label.split(" ")
        assert color in COLORS and shape in SHAPES
        assert s.think.startswith("I see ")
        if s.target is None:
            assert s.think.endswith(f"There is no {s.label}.")
            assert all((o.color, o.shape) != (color, shape) for o in scene.objects)
        else:
            t = scene.objects[s.target]
            assert s.label == f"{t.color} {t.shape}"
            assert f"The target is {s.expression}." in s.think
            assert s.think.endswith(f"It is the {s.label}.")
        assert s.think.count(" a ") + s.think.count(" an ") >= len(scene.objects)


def test_expressions_deterministic() -> None:
    """Same seed gives the same scene and samples."""

    def run(seed: int) -> list[Sample]:
        rng = random.Random(seed)
        return generate_expressions(generate_scene(rng), rng, 4)

    assert run(9) == run(9)


def test_demo_scene() -> None:
    """The fixed demo scene is deterministic, resolves correctly and has a no-target entry."""
    scene, samples = demo_scene()
    assert demo_scene() == (scene, samples)
    assert any(s.target is None for s in samples)
    assert {s.form for s in samples} == set(FORMS)
    for s in samples:
        expected = [] if s.target is None else [s.target]
        assert resolve(scene, s.expression) == expected, s.expression
