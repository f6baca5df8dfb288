"""Formats and phrasings seen in real Qwen2.5-VL outputs (bench/data/real-outputs/)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from boxguard.guards import CheckResult, Policy, verify
from boxguard.guards.lexicon import relation, spelling_variant
from boxguard.guards.nouns import analyze
from boxguard.guards.parse import parse_output

LOGS = Path(__file__).resolve().parents[3] / "bench" / "data" / "real-outputs"
LEXICON_ONLY = Policy(label_embeddings=False)


@pytest.mark.parametrize(
    ("text", "box", "label"),
    [
        # The trace written into a JSON string value does not delimit the answer.
        (
            '```json\n{"bbox_2d": [45, 659, 163, 713], "thought": "<think>It is the Profile button.'
            '</think>"}\n```',
            (45, 659, 163, 713),
            None,
        ),
        # A box quoted in a string value; a tuple; two corners.
        (
            '```json\n{"thinking_process": "x", "answer": "[1897, 1069, 1912, 1085]"}\n```',
            (1897, 1069, 1912, 1085),
            None,
        ),
        ("<think>t</think><answer>(1478, 35, 1506, 54)</answer>", (1478, 35, 1506, 54), None),
        (
            '{"final_answer": "<answer>(1800, 546), (2439, 647)</answer>"}',
            (1800, 546, 2439, 647),
            None,
        ),
        # Other box keys, corner pairs, a corner with width and height.
        ('{"final_answer": {"bounding_box_2d": [2450, 38, 2476, 69]}}', (2450, 38, 2476, 69), None),
        (
            '{"bounding_box": {"top_left": [30, 985], "bottom_right": [730, 1060]}}',
            (30, 985, 730, 1060),
            None,
        ),
        (
            '{"answer": {"x1": 702, "y1": 734, "width": 25, "height": 25}}',
            (702, 734, 727, 759),
            None,
        ),
        # JSON inside a JSON string.
        (
            '{"final_answer": "<answer>{\\"bbox_2d\\": [1245, 476, 1399, 490]}</answer>"}',
            (1245, 476, 1399, 490),
            None,
        ),
        # A box-less side object next to a box; the think block of a label is not a label.
        (
            '[{"thinking process": "the right dog", "bbox_2d": [143, 9, 308, 168]}, '
            '{"answer": "yes"}]',
            (143, 9, 308, 168),
            None,
        ),
        (
            '[{"bbox_2d": [1, 2, 30, 40], "label": "<think>the knife</think>"}, '
            '{"bbox_2d": [1, 2, 30, 40], "label": "<answer>butterknife</answer>"}]',
            (1, 2, 30, 40),
            None,
        ),
        # An unclosed <think> that swallowed the answer.
        (
            '<think>Step 1: find him.\nFinal answer:\n```json\n[{"bbox_2d": [279, 76, 420, 358], '
            '"label": "man"}]\n```',
            (279, 76, 420, 358),
            "man",
        ),
    ],
)
def test_salvaged_formats(text: str, box: tuple[float, ...], label: str | None) -> None:
    p = parse_output(text)
    assert p.ok, p.detail
    assert p.boxes[0].coords == box
    assert p.boxes[0].label == label


def test_answer_label_loses_its_tags() -> None:
    p = parse_output(
        '[{"bbox_2d": [1, 2, 30, 40], "label": "<think>t</think>"}, '
        '{"bbox_2d": [50, 2, 80, 40], "label": "<answer> horsie</answer>"}]'
    )
    assert [b.label for b in p.boxes] == [None, "horsie"]


@pytest.mark.parametrize(
    "text",
    [
        '{"thinking_process": "<think>no such tab</think>", "final_answer": "There is no bounding '
        'box for the sentence because it does not exist in the image."}',
        '{"thinking_process": "<think>nothing bold</think>", "final_answer": []}',
        '{"thinking_process": "<think>cut off</think>", "final_answer": null}',
    ],
)
def test_no_object_in_answer_values(text: str) -> None:
    p = parse_output(text)
    assert p.ok and p.no_object and not p.boxes


@pytest.mark.parametrize(
    "text",
    [
        '{"final_answer": "<answer>Oldest → Newest</answer>"}',
        '{"bounding_box": [340, 586]}',
        '{"owner": "Owner"}',
    ],
)
def test_answers_without_a_box_still_fail(text: str) -> None:
    assert not parse_output(text).ok


def test_truncated_repetitive_list_keeps_every_complete_box() -> None:
    text = "```json\n[\n" + '\t{"bbox_2d": [38, 36, 79, 68], "label": "open the menu"},\n' * 9
    p = parse_output(text + '\t{"bbox_')
    assert p.ok and p.repaired == 1 and len(p.boxes) == 9
    v = verify(text + '\t{"bbox_', "open the menu", (200, 200), policy=LEXICON_ONLY)
    assert v.accepted and len(v.detections) == 1  # duplicates collapse


def test_real_logs_parse_at_least_98_percent() -> None:
    for path in sorted(LOGS.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows = json.load(fh)["results"]
        parsed = sum(parse_output(r["model_output"]).ok for r in rows)
        assert parsed / len(rows) >= 0.98, path.name


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("cupake", "cupcake", True),
        ("suace", "sauce", True),
        ("zepra", "zebra", True),
        ("brocolli", "broccoli", True),
        ("shirt", "skirt", False),
        ("man", "van", False),
        ("chair", "hair", False),
    ],
)
def test_spelling_variants(a: str, b: str, same: bool) -> None:
    assert spelling_variant(a, b) is same


def test_typo_in_expression_matches_corrected_label() -> None:
    assert relation("doghtnut", "donut") == "synonym"  # via 'doughnut'
    for expr, label in (
        ("biggest cupake", "biggest cupcake"),
        ("far left doghtnut on the bottom", "far left donut on the bottom"),
    ):
        out = (
            f'<think>I see a {label}.</think><answer>[{{"bbox_2d": [1, 2, 30, 40], '
            f'"label": "{label}"}}]</answer>'
        )
        assert verify(out, expr, (100, 100), policy=LEXICON_ONLY).accepted


@pytest.mark.parametrize(
    ("expr", "head"),
    [
        ("open the menu", "menu"),
        ("download in apple app store", "store"),
        ("view my shopping cart", "cart"),
        ("check the profile of user x", "profile"),
        ("book on the left", "book"),
        ("girl blue shirt", "girl"),
    ],
)
def test_gui_instructions_and_run_on_phrases(expr: str, head: str) -> None:
    assert analyze(expr).head == head


@pytest.mark.parametrize(
    ("expr", "label", "ok"),
    [
        ("open the menu", "menu button", True),  # the widget, for a target the lexicon cannot judge
        ("search in this page", "search icon", True),
        ("the man on the left", "the man on the left in a red shirt", True),  # restates
        ("change the payment currency", "Output in JSON format", True),  # names nothing
        ("the dog on the left", "cat", False),
    ],
)
def test_labels_robust_to_people(expr: str, label: str, ok: bool) -> None:
    out = f'[{{"bbox_2d": [1, 2, 30, 40], "label": "{label}"}}]'
    assert verify(out, expr, (100, 100), policy=LEXICON_ONLY).accepted is ok


def _think(think: str, expr: str) -> CheckResult:
    """think_consistency for one trace and a labelled box."""
    out = (
        f'<think>{think}</think><answer>[{{"bbox_2d": [1, 2, 30, 40], "label": "{expr}"}}]</answer>'
    )
    v = verify(out, expr, (100, 100), policy=LEXICON_ONLY)
    return next(c for c in v.checks if c.name == "think_consistency")


@pytest.mark.parametrize(
    ("think", "expr"),
    [
        ("In this image, there is no visible umpire behind the catcher.", "umpire"),
        ("Step 3: There is no other man to the left of this first man.", "second man on the left"),
        ("The pitcher stands on the mound, which is not visible in this image.", "pitcher"),
        ("The other person does not appear to be wearing a hat.", "man in hat"),
        (
            "The elephant is on the right, even though we can't see its entire back end.",
            "back end of elephant on right",
        ),
        ("There is no bus in the background on the right side of the image.", "bus in the back"),
    ],
)
def test_qualified_denials_do_not_abstain(think: str, expr: str) -> None:
    assert _think(think, expr).passed


@pytest.mark.parametrize(
    ("think", "expr"),
    [
        ("The player is a batter. There is no visible umpire in the image.", "umpire"),
        ("There is no specific object or area labeled as 'yep' in the image.", "yep"),
        ("I looked everywhere but I cannot find it.", "the red car"),
    ],
)
def test_denials_of_the_target_abstain(think: str, expr: str) -> None:
    assert not _think(think, expr).passed


def test_overlapping_boxes_of_one_label_keep_the_first() -> None:
    out = (
        '[{"bbox_2d": [0, 1, 153, 332], "label": "man standing"}, '
        '{"bbox_2d": [100, 127, 289, 287], "label": "man standing"}]'
    )
    v = verify(out, "man standing", (500, 500), policy=LEXICON_ONLY)
    assert v.accepted and [d.bbox for d in v.detections] == [(0.0, 1.0, 153.0, 332.0)]
    disjoint = out.replace("100, 127, 289", "346, 127, 489")
    assert verify(disjoint, "man standing", (500, 500), policy=LEXICON_ONLY).reasons == [
        "cardinality"
    ]
