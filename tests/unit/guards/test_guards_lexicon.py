"""Lexicon and shallow noun-phrase analysis."""

from __future__ import annotations

import pytest
from boxguard.guards.lexicon import lemma, relation
from boxguard.guards.nouns import analyze, mentioned_heads


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("dogs", "dog"),
        ("buses", "bus"),
        ("boxes", "box"),
        ("men", "man"),
        ("people", "person"),
        ("glasses", "glasses"),
        ("bus", "bus"),
        ("ladies", "lady"),
        ("knives", "knife"),
        ("circles", "circle"),
        ("Hexagons", "hexagon"),
        ("grass", "grass"),
    ],
)
def test_lemma(word: str, expected: str) -> None:
    assert lemma(word) == expected


def test_relations() -> None:
    assert relation("man", "man") == "same"
    assert relation("sofa", "couch") == "synonym"
    assert relation("person", "man") == "hypernym" and relation("man", "person") == "hypernym"
    assert relation("shape", "circle") == "hypernym"
    assert relation("man", "pole") == "different"
    assert relation("lantern", "lamp") == "unknown"


@pytest.mark.parametrize(
    ("expr", "head", "others", "colors"),
    [
        ("the red circle left of the blue square", "circle", {"square"}, {"red"}),
        ("metal pole", "pole", set(), set()),
        ("the pole left of the bus", "pole", {"bus"}, set()),
        ("the woman holding an umbrella", "woman", {"umbrella"}, set()),
        ("man in blue shirt", "man", {"shirt"}, set()),
        ("the leftmost green star", "star", set(), {"green"}),
        ("the bottom-most small hexagon", "hexagon", set(), set()),
        ("the topmost yellow triangle above the purple star", "triangle", {"star"}, {"yellow"}),
        ("the orange hexagon right of the green circle", "hexagon", {"circle"}, {"orange"}),
        ("the car parked near the red truck", "car", {"truck"}, set()),
        ("the traffic light above the road", "traffic light", {"road"}, set()),
        ("The Dogs", "dog", set(), set()),
    ],
)
def test_analyze(expr: str, head: str, others: set[str], colors: set[str]) -> None:
    info = analyze(expr)
    assert info.head == head and info.other_nouns == others and info.colors == colors


def test_generic_and_sizes() -> None:
    assert analyze("the one on the left").generic
    assert analyze("the small star").sizes == {"small"}
    assert analyze("the whole image").whole_image


def test_mentioned_heads() -> None:
    heads = mentioned_heads(
        "I see a red circle, a blue square and a green star. The target is the red circle."
    )
    assert [h for h, _ in heads] == ["circle", "square", "star", "circle"]
    assert heads[1][1] == {"blue"}
