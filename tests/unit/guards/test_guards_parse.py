"""Parser: every output format of QWEN-FACTS, spans for logprobs, and never raising."""

from __future__ import annotations

from boxguard.guards import Verdict, verify
from boxguard.guards.parse import parse_output
from hypothesis import given, settings
from hypothesis import strategies as st


def test_fenced_json_with_label_and_spans() -> None:
    text = '```json\n[{"bbox_2d": [12, 34, 56, 78], "label": "red car"}]\n```'
    p = parse_output(text)
    assert p.ok and p.fmt == "fenced:json"
    box = p.boxes[0]
    assert box.coords == (12, 34, 56, 78) and box.label == "red car"
    assert [text[a:b] for a, b in box.coord_spans] == ["12", "34", "56", "78"]
    assert box.label_span is not None and text[slice(*box.label_span)] == "red car"
    assert p.branch_span is not None and text[slice(*p.branch_span)] == "{"


def test_python_literal_single_quotes() -> None:
    p = parse_output("[{'bbox_2d': [1, 2, 3, 4], 'label': \"woman's hat\"}]")
    assert p.ok and p.boxes[0].label == "woman's hat"


def test_single_object_and_bbox_key() -> None:
    p = parse_output('{"bbox": [1, 2, 30, 40], "label": "dog"}')
    assert p.ok and p.boxes[0].coords == (1, 2, 30, 40)


def test_think_and_answer() -> None:
    p = parse_output('<think>It is the cat.</think><answer>[{"bbox_2d": [1,2,3,4]}]</answer>')
    assert p.ok and p.think == "It is the cat." and p.boxes[0].label is None


def test_think_without_opening_tag() -> None:
    p = parse_output("The cat.</think><answer>[]</answer>")
    assert p.think == "The cat." and p.no_object


def test_box_in_think_is_not_the_answer() -> None:
    p = parse_output("<think>maybe [1, 2, 3, 4]</think><answer>[]</answer>")
    assert p.ok and p.no_object and not p.boxes


def test_visual_rft_and_no_objects() -> None:
    p = parse_output("<answer>[{'Position': [10, 20, 30, 40], 'Confidence': 0.8}]</answer>")
    assert p.ok and p.native_frame == "relative1000" and p.boxes[0].stated_confidence == 0.8
    p = parse_output("<answer>No Objects</answer>")
    assert p.ok and p.no_object and not p.boxes


def test_qwen2_box_tokens() -> None:
    text = (
        "<|object_ref_start|>a woman<|object_ref_end|><|box_start|>(462,371),(709,785)<|box_end|>"
    )
    p = parse_output(text)
    assert p.ok and p.native_frame == "relative1000"
    assert p.boxes[0].coords == (462, 371, 709, 785) and p.boxes[0].label == "a woman"


def test_truncated_list_repaired() -> None:
    p = parse_output('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6')
    assert p.ok and p.repaired == 1 and len(p.boxes) == 1


def test_only_truncated_object_fails() -> None:
    p = parse_output('[{"bbox_2d": [1, 2, 3')
    assert not p.ok and "truncated" in p.detail


def test_empty_and_no_object_phrases() -> None:
    for text in (
        "[]",
        "```json\n[]\n```",
        "<answer>[ ]</answer>",
        "No Objects",
        "There is no such object.",
    ):
        p = parse_output(text)
        assert p.ok and p.no_object, text


def test_bare_box_list_and_floats() -> None:
    p = parse_output("The answer is [0.1, 0.2, 0.5, 0.6].")
    assert p.ok and p.fmt == "bare-list" and p.boxes[0].has_float


def test_nested_objects_fall_back_to_a_real_parse() -> None:
    p = parse_output('[{"bbox_2d": [1, 2, 30, 40], "label": "dog", "attrs": {"color": "red"}}]')
    assert p.ok and p.boxes[0].coords == (1, 2, 30, 40) and p.boxes[0].label == "dog"


def test_malformed_object_fails() -> None:
    assert not parse_output('[{"bbox_2d": [1, 2, 3], "label": "x"}]').ok
    assert not parse_output("hello").ok
    assert not parse_output("").ok


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    assert isinstance(verify(text, "the red circle", (100, 100)), Verdict)


_FRAGMENTS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "```json\n",
        "```",
        "[",
        "]",
        "{",
        "}",
        '"bbox_2d": ',
        "'Position': ",
        '"label": ',
        '"red circle"',
        "'dog'",
        ", ",
        "1",
        "0.5",
        "-3",
        "1000",
        "No Objects",
        "<|box_start|>",
        "<|box_end|>",
        "(",
        ")",
        "<|object_ref_start|>",
        "<|object_ref_end|>",
        "The target is the red circle.",
        "There is no dog.",
        "1e309",
        "\n",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_FRAGMENTS, max_size=40),
    st.booleans(),
    st.sampled_from(["auto", "pixels", "relative1000", "normalized"]),
)
def test_structured_noise_never_raises(parts: list[str], multiple: bool, frame: str) -> None:
    v = verify(
        "".join(parts),
        "the red circle",
        (64, 48),
        frame=frame,  # type: ignore[arg-type]
        multiple=multiple,
    )
    assert v.status in ("accepted", "abstained")
    for d in v.detections:
        x1, y1, x2, y2 = d.bbox
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 48
