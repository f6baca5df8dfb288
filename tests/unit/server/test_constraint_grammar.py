"""The pure-Python answer grammar accepts exactly what xgrammar's compilation of the schema does."""

from __future__ import annotations

import pytest
from boxguard.server.backends.openai_translate import (
    UpstreamInvalid,
    parse_chat_completion,
    pick_model,
    yes_no_completion,
)
from boxguard.server.constraint_grammar import constraint_ebnf, uint_upto
from boxguard.server.constraints import Constraint, box_list_schema, yes_no_constraint

xgr = pytest.importorskip("xgrammar")
accepts = pytest.importorskip("xgrammar.testing")._is_grammar_accept_string


def _box(x1: object, y1: object, x2: object, y2: object, label: str = "red") -> str:
    return f'{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "{label}"}}'


def _answers(max_x: int, max_y: int, items: int, chars: int) -> list[str]:
    """Answers on and around every boundary: numbers, label length, item count, spacing."""
    edge = [0, 1, 9, 10, 99, 100, max_x - 1, max_x, max_x + 1, max_y, max_y + 1, "00", "01", -1]
    boxes = [_box(x, 0, max_x, y) for x in edge for y in edge]
    labels = [_box(1, 2, 3, 4, "a" * n) for n in (0, 1, chars, chars + 1)]
    labels += [_box(1, 2, 3, 4, s) for s in ("é 😀", 'a\\"b', "a\\u00e9", "a\\\\", "tab\there")]
    lists = ["[" + ", ".join([_box(1, 2, 3, 4)] * n) + "]" for n in range(items + 2)]
    spacing = [
        '[{"bbox_2d":[1, 2, 3, 4], "label": "r"}]',
        "[ ]",
        '[{"label": "r", "bbox_2d": [1, 2, 3, 4]}]',
        _box(1, 2, 3, 4),
    ]
    return [f"[{b}]" for b in boxes + labels] + lists + spacing


@pytest.mark.parametrize(
    ("max_x", "max_y", "items", "chars"),
    [(448, 336, 1, 8), (1000, 1000, 3, 48), (28, 9, 2, 1), (308, 252, 16, 48)],
)
def test_the_grammar_is_xgrammars_language(max_x: int, max_y: int, items: int, chars: int) -> None:
    constraint = Constraint(
        json_schema=box_list_schema(max_x, max_y, max_items=items, max_label_chars=chars)
    )
    ours = xgr.Grammar.from_ebnf(constraint_ebnf(constraint))
    theirs = xgr.Grammar.from_ebnf(constraint.ebnf())
    differ = [
        a for a in _answers(max_x, max_y, items, chars) if accepts(ours, a) != accepts(theirs, a)
    ]
    # The one documented difference: xgrammar's label also takes JSON escapes.
    assert all("\\" in a for a in differ), differ
    assert accepts(ours, "[" + _box(0, 0, max_x, max_y, "r") + "]")


@pytest.mark.parametrize("n", [0, 5, 9, 10, 42, 99, 100, 101, 448, 1000, 1280])
def test_uint_upto_is_exactly_zero_to_n(n: int) -> None:
    grammar = xgr.Grammar.from_ebnf(f"root ::= {uint_upto(n)}")
    for value in range(0, n + 12):
        assert accepts(grammar, str(value)) == (value <= n), value
    assert not accepts(grammar, "01") and not accepts(grammar, "-1")


def test_choices_and_unsupported_schemas() -> None:
    assert constraint_ebnf(yes_no_constraint()) == 'root ::= "yes" | "no"'
    with pytest.raises(ValueError, match="unsupported"):
        constraint_ebnf(Constraint(json_schema={"type": "number"}))


def _completion(content: object, tops: list[tuple[str, float]] | None = None) -> dict:
    position = {
        "token": "x",
        "logprob": -0.1,
        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in tops or []],
    }
    return {
        "choices": [
            {"index": 0, "message": {"content": content}, "logprobs": {"content": [position]}}
        ]
    }


def test_p_yes_is_renormalized_over_the_yes_and_no_tokens() -> None:
    import math

    answer = yes_no_completion(
        _completion("no", [("no", math.log(0.3)), ("yes", math.log(0.1)), ("Yes", math.log(0.5))])
    )
    assert answer.text == "no" and math.exp(answer.tokens[0].logprob) == pytest.approx(0.75)
    assert yes_no_completion(_completion("maybe", [("maybe", 0.0)])).text == ""


@pytest.mark.parametrize(
    "data",
    [
        None,
        "text",
        {},
        {"choices": []},
        {"choices": ["x"]},
        {"choices": [{"message": {}}]},
        {"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{"tok": 1}]}}]},
        {"choices": [{"index": "0", "message": {"content": "a"}}, {"index": 1, "message": {}}]},
        {"choices": [{"message": {"content": "a"}, "logprobs": {"content": "x"}}]},
        {"choices": [{"message": {"content": "a"}, "logprobs": ["x"]}]},
    ],
)
def test_what_is_not_a_chat_completion_is_upstream_invalid(data: object) -> None:
    with pytest.raises(UpstreamInvalid):
        parse_chat_completion(data)


def test_pick_model() -> None:
    assert pick_model(["a", "b"], "b") == "b"
    with pytest.raises(ValueError, match="name one with --upstream-model"):
        pick_model(["a", "b"], None)
    with pytest.raises(ValueError, match="does not serve 'c'"):
        pick_model(["a"], "c")
