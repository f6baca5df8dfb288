"""Long expressions the text checks misread on the dev half of bench/data/real-outputs: shades
and near-synonyms of colours, hyphenated compounds, adjectives and adverbs taken for the head,
corrected typos, and doubt over which one read as absence."""

from __future__ import annotations

import pytest
from boxguard.guards.label import judge_label, restates
from boxguard.guards.lexicon import color_family
from boxguard.guards.nouns import analyze
from boxguard.guards.policy import Policy
from boxguard.guards.think import analyze_think


@pytest.mark.parametrize(
    ("expression", "head", "colors"),
    [
        # a shade before a colour is part of the colour, not the head
        ("man light yellow shirt", "man", set()),
        ("light yellow shirt", "shirt", {"yellow"}),
        ("the dark brown horse", "horse", {"brown"}),
        ("pale green chair", "chair", {"green"}),
        ("bright blue shirt", "shirt", {"blue"}),
        # hyphenated and unhyphenated compounds
        ("light-blue shirt", "shirt", {"blue"}),
        ("blue-green vase", "vase", {"blue", "green"}),
        ("pinkish-purple outfit", "outfit", {"pink", "purple"}),
        ("chocolate-covered donut", "donut", set()),
        ("the chocolate covered donut in the middle", "donut", set()),
        ("dark-haired man", "man", set()),
        # adjectives, adverbs and participles are not the head
        ("short black hair backpack lady", "lady", {"black"}),
        ("left monitor the wider one left", "monitor", set()),
        ("computer very right of pic", "computer", set()),
        ("standing white shirt headless person", "person", {"white"}),
        ("zebra whos full body is shown", "zebra", set()),
        ("person far left up front", "person", set()),
        ("guy creepily staring at little girl", "guy", set()),
        ("very top of motorcycle", None, set()),
        # what still holds
        ("man holding umbrella", "man", set()),
        ("red light", "light", {"red"}),
        ("traffic light", "traffic light", set()),
    ],
)
def test_heads_and_colours(expression: str, head: str | None, colors: set[str]) -> None:
    info = analyze(expression)
    assert (info.head, set(info.colors)) == (head, colors)


def test_colour_families() -> None:
    assert color_family("greyish") == {"gray"} and color_family("reddish") == {"red"}
    assert color_family("bluish") == {"blue"} and "red" in color_family("maroon")
    assert color_family("dark-haired") == frozenset() and color_family("light") == frozenset()


@pytest.mark.parametrize(
    ("label", "expression"),
    [
        ("maroon shirt", "red shirt"),  # near-synonyms do not contradict
        ("gold vase", "yellow vase"),
        ("light blue shirt", "blue shirt"),
        ("blonde woman", "woman with yellow hair"),
    ],
)
def test_colour_near_synonyms_do_not_conflict(label: str, expression: str) -> None:
    ok, _, detail = judge_label(label, expression, None, Policy(label_embeddings=False))
    assert ok, detail


def test_colours_that_differ_still_conflict() -> None:
    ok, score, _ = judge_label("pink shirt", "purple shirt", None, Policy(label_embeddings=False))
    assert not ok and score == 0.0


def test_a_label_that_corrects_a_typo_restates() -> None:
    assert restates("closest bus on the right", "closest bust on right")
    assert not restates("bus", "bust")  # one word alone: no other words vouch for it
    assert not restates("red shirt on left", "red skirt on left")  # two known categories


def test_doubt_over_which_one_is_not_absence() -> None:
    think = (
        "In the image, there is only one person visible, so it's not clear what you mean by "
        '"left most person." I would identify the person on the far left.'
    )
    assert analyze_think(think, "left most person").decision is None
    unclear = 'there is no clear indication of what "top" refers to in the image'
    assert analyze_think(unclear, "top").decision == "absent"
