"""The demo's printed table, tile captions and README block: verdicts in words, policy notes
kept, 80 columns, both kinds of error counted."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rich")

from boxguard.clients import GroundResult  # noqa: E402
from boxguard.demo.cli import Row, captioned, verdict_table  # noqa: E402
from boxguard.demo.explain import verdict_words  # noqa: E402
from boxguard.demo.readme import BEGIN, END, markdown, replace_block, summary  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402


def result(status: str, checks: list[dict[str, Any]], boxes: int = 1) -> GroundResult:
    det = [{"bbox": [10, 10, 50, 50], "label": "red circle", "confidence": 0.9}] * boxes
    return GroundResult.model_validate(
        {
            "id": "1",
            "status": status,
            "model": "m",
            "image": {"width": 100, "height": 100},
            "detections": det if status == "accepted" else [],
            "candidates": det,
            "checks": checks,
            "reasons": [c["name"] for c in checks if not c["passed"]],
        }
    )


VISUAL_NO = {
    "name": "visual_check",
    "passed": False,
    "score": 0.08,
    "detail": "P(yes) 0.08 < 0.5 for 'Is this a red circle?'",
}
VISUAL_YES = {
    "name": "visual_check",
    "passed": True,
    "score": 0.93,
    "detail": "P(yes) 0.93 >= 0.5 for 'Is this a red circle?'",
}
LOW_CONF = {
    "name": "confidence",
    "passed": False,
    "score": 0.41,
    "detail": "lowest detection confidence 0.41 < 0.99",
}


def test_verdicts_say_what_was_decided_and_why() -> None:
    assert verdict_words(result("abstained", [VISUAL_NO]), "the red circle") == (
        "abstained: the crop does not look like a red circle, P(yes)=0.08"
    )
    assert verdict_words(result("accepted", [VISUAL_YES]), "the red circle") == (
        "accepted: the crop looks like a red circle, P(yes)=0.93"
    )
    words = verdict_words(result("abstained", [LOW_CONF]), "the red circle")
    assert words == (
        "abstained: the model was unsure of its box (lowest detection confidence 0.41 < 0.99)"
    )
    assert "no such object" in verdict_words(result("accepted", [], boxes=0), "the red star")
    refused = {
        "name": "cardinality",
        "passed": False,
        "score": 0.0,
        "detail": "the model answered [] (no such object), ... (accept_no_object false)",
    }
    assert verdict_words(result("abstained", [refused], boxes=0), "the blue square") == (
        "abstained: the model answered [] (no such object), which no check can verify"
    )


def test_the_table_keeps_the_policy_note_and_fits_80_columns() -> None:
    rows = [
        Row(
            "the red circle left of the blue square",
            "",
            (10, 10, 50, 50),
            result("abstained", [VISUAL_NO]),
        ),
        Row(
            "the blue square", "[policy min_confidence=0.99]", None, result("abstained", [LOW_CONF])
        ),
    ]
    console = Console(width=80, record=True, color_system=None)
    console.print(verdict_table("http://127.0.0.1:1234", rows))
    text = console.export_text()
    # Rich wraps cells: each piece is on its own line of the cell.
    assert "[policy" in text and "min_confidence=0.99]" in text
    assert "does not look" in text and "like a red circle, P(yes)=0.08" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_tile_is_captioned_below_the_drawing() -> None:
    panel = Image.new("RGB", (300, 200), "white")
    tile = captioned(
        panel,
        "the red circle",
        "abstained: the crop does not look like a red circle, P(yes)=0.08",
        "0.12",
    )
    assert tile.width == 300 and tile.height > 200
    assert tile.crop((0, 200, 300, tile.height)).getbbox() is not None


def test_truth_is_drawn_thin_and_labelled_and_no_cell_is_empty() -> None:
    from boxguard.demo.cli import TRUTH_COLOR, _grid, _with_truth

    panel = Image.new("RGB", (400, 300), "white")
    drawn = _with_truth(panel, (100, 80, 200, 160))
    assert drawn.getpixel((150, 80)) == TRUTH_COLOR and drawn.getpixel((150, 82)) == (255,) * 3
    assert TRUTH_COLOR in {drawn.getpixel((x, 166)) for x in range(100, 140)}  # the label below
    nothing = _with_truth(panel, None)
    assert TRUTH_COLOR in {nothing.getpixel((x, 285)) for x in range(4, 60)}
    for n in (5, 7):  # 7: the demo's 6 expressions and the guard probe
        sheet = _grid([panel] * n)
        cells = (sheet.width // 400) * (sheet.height // 300)
        assert cells == n + 1  # every panel and the legend, no blank cell


ROWS = [
    # accepted, box [10, 10, 50, 50] on the truth: right
    Row("the red circle", "", (10, 10, 50, 50), result("accepted", [VISUAL_YES])),
    # accepted far from the truth: a wrong answer accepted
    Row("the blue square", "", (60, 60, 90, 90), result("accepted", [VISUAL_YES])),
    # abstained on a right box: a right answer refused
    Row(
        "the red circle",
        "[policy min_confidence=0.99]",
        (10, 10, 50, 50),
        result("abstained", [LOW_CONF]),
    ),
    # abstained, no such object in the scene, the candidate is a box: refusing it is right
    Row("the purple hexagon", "", None, result("abstained", [VISUAL_NO])),
]


def test_the_summary_counts_both_kinds_of_error() -> None:
    assert summary(ROWS) == (
        "2 of 4 requests accepted (1 of them wrong), 2 abstained (1 of them on a right answer)."
    )


def test_the_block_is_a_table_with_one_row_per_request() -> None:
    block = markdown(ROWS)
    lines = block.splitlines()
    assert lines[0] == BEGIN and lines[-1] == END
    rows = [line for line in lines if line.startswith("| ") and "expression" not in line]
    assert len(rows) == len(ROWS)
    assert (
        rows[0]
        == "| the red circle | accepted: the crop looks like a red circle, P(yes)=0.93 | 1.00 |"
    )
    assert rows[1].endswith("| 0.00 |") and rows[3].endswith("| - |")
    assert "[policy min_confidence=0.99]" in rows[2]


def test_the_block_is_replaced_and_the_rest_of_the_readme_kept() -> None:
    text = f"intro\n\n{BEGIN}\nold table\n{END}\n\nafter\n"
    updated = replace_block(text, markdown(ROWS[:1]))
    assert updated.startswith("intro\n\n" + BEGIN) and updated.endswith(END + "\n\nafter\n")
    assert "old table" not in updated
