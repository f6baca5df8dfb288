"""Output constraints: the schema, and what xgrammar 0.2.8 really accepts once compiled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.server import constraints
from boxguard.server.constraints import (
    JSON_SEPARATORS,
    Constraint,
    box_list_schema,
    point_list_schema,
    reachable_rules,
    yes_no_constraint,
)

xgr = pytest.importorskip("xgrammar")


# -- the schema itself ------------------------------------------------------------------------


def test_schema_bounds_each_coordinate_to_its_axis() -> None:
    schema = box_list_schema(448, 336, max_items=3, max_label_chars=32)
    assert schema["type"] == "array"
    assert (schema["minItems"], schema["maxItems"]) == (0, 3)
    item = schema["items"]
    assert item["required"] == ["bbox_2d", "label"]
    assert item["additionalProperties"] is False
    bbox = item["properties"]["bbox_2d"]
    assert (bbox["minItems"], bbox["maxItems"]) == (4, 4)
    assert bbox["items"] is False
    xs = [bbox["prefixItems"][i] for i in (0, 2)]
    ys = [bbox["prefixItems"][i] for i in (1, 3)]
    for spec, bound in [*((x, 448) for x in xs), *((y, 336) for y in ys)]:
        assert spec == {"type": "integer", "minimum": 0, "maximum": bound}


def test_schema_is_json_serializable() -> None:
    schema = box_list_schema(1000, 1000, max_items=16, max_label_chars=48)
    assert json.loads(json.dumps(schema)) == schema


def test_constraint_needs_exactly_one_of_schema_or_choices() -> None:
    with pytest.raises(ValueError):
        Constraint()
    with pytest.raises(ValueError):
        Constraint(json_schema={"type": "array"}, choices=("yes",))
    assert "root ::=" in Constraint(json_schema={"type": "array"}).ebnf()


def test_yes_no_constraint() -> None:
    c = yes_no_constraint()
    assert c.choices == ("yes", "no")
    assert c.json_schema is None
    assert c.think is False
    assert c.ebnf() == 'root ::= "yes" | "no"'
    assert c.max_tokens == 1  # the first token decides; the rest is forced


def test_ebnf_escapes_quotes_and_backslashes() -> None:
    assert Constraint(choices=('a"b', "c\\d")).ebnf() == 'root ::= "a\\"b" | "c\\\\d"'


# -- the grammar text: only the rules the answer reaches ------------------------------------


def xgrammar_text(schema: dict) -> str:
    """xgrammar's own EBNF of `schema`, every rule as printed."""
    return str(
        xgr.Grammar.from_json_schema(
            json.dumps(schema), any_whitespace=False, separators=JSON_SEPARATORS, strict_mode=True
        )
    )


@pytest.mark.parametrize(
    "schema",
    [
        box_list_schema(168, 140, max_items=1, max_label_chars=48),
        box_list_schema(1288, 728, max_items=16, max_label_chars=48),
        point_list_schema(644, 476, max_items=3, max_label_chars=32),
    ],
)
def test_ebnf_keeps_exactly_the_rules_xgrammar_finds_reachable(schema: dict) -> None:
    full = xgrammar_text(schema)
    text = Constraint(json_schema=schema).ebnf()
    # xgrammar's own dead-code pass is the reference for "reachable".
    reference = xgr.testing.GrammarFunctor.dead_code_eliminator(xgr.Grammar.from_ebnf(full))
    assert str(xgr.Grammar.from_ebnf(text)) == str(reference)
    assert "basic_any" in full
    assert "basic_" not in text
    assert len(text) < 0.6 * len(full)


def test_reachable_rules_leaves_a_text_it_cannot_read_alone() -> None:
    assert reachable_rules('root ::= "a"\n  | "b"') == 'root ::= "a"\n  | "b"'
    assert reachable_rules('start ::= "a"') == 'start ::= "a"'


def test_reachable_rules_ignores_names_inside_literals_and_classes() -> None:
    text = 'root ::= "basic" [a-z] b\nb ::= "c"\nbasic ::= "x"\nz ::= "y"'
    assert reachable_rules(text) == 'root ::= "basic" [a-z] b\nb ::= "c"'


def test_ebnf_keeps_every_rule_when_the_pruned_text_does_not_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = box_list_schema(97, 89, max_items=2, max_label_chars=7)
    monkeypatch.setattr(constraints, "reachable_rules", lambda text: "root ::= undefined_rule")
    constraints.json_schema_ebnf.cache_clear()
    try:
        assert Constraint(json_schema=schema).ebnf() == xgrammar_text(schema)
    finally:
        constraints.json_schema_ebnf.cache_clear()


# -- compiled with real xgrammar against the tiny checkpoint's tokenizer -----------------------


@pytest.fixture(scope="module")
def compiler(tiny_checkpoint: Path) -> object:
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    vocab = AutoConfig.from_pretrained(tiny_checkpoint).get_text_config().vocab_size
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    compiler = xgr.GrammarCompiler(info)
    compiler.stop_token_id = tok.convert_tokens_to_ids("<|im_end|>")  # for the tests below
    return compiler


def compile_schema(compiler: object, schema: dict) -> object:
    # Exactly as HFEngine.compile does it (and what the vLLM backend sends as `grammar`).
    return compiler.compile_grammar(Constraint(json_schema=schema).ebnf())


def accepts(grammar: object, text: str) -> bool:
    """True when `text` is a complete sentence of the grammar (and the stop token may follow)."""
    matcher = xgr.GrammarMatcher(grammar)
    if not matcher.accept_string(text):
        return False
    return matcher.is_completed()


BOX = '{{"bbox_2d": [{}, {}, {}, {}], "label": "{}"}}'


def box(x1: int = 1, y1: int = 2, x2: int = 3, y2: int = 4, label: str = "red circle") -> str:
    return BOX.format(x1, y1, x2, y2, label)


@pytest.fixture(scope="module")
def one_box(compiler: object) -> object:
    return compile_schema(compiler, box_list_schema(448, 336, max_items=1, max_label_chars=12))


@pytest.mark.parametrize(
    "text",
    [
        '[{"bbox_2d": [1, 2, 3, 4], "label": "red circle"}]',
        "[]",
        f"[{box(0, 0, 0, 0, 'x')}]",
        f"[{box(448, 336, 448, 336, 'x')}]",  # both bounds are inclusive
        f"[{box(label='abcdefghijkl')}]",  # exactly max_label_chars
        f"[{box(label='ü-é ok')}]",  # non-ASCII labels are fine
    ],
)
def test_valid_answers_are_accepted(one_box: object, text: str) -> None:
    assert accepts(one_box, text)
    json.loads(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"[{box(449, 2, 3, 4)}]", "x above the width"),
        (f"[{box(1, 2, 3, 337)}]", "y above the height"),
        (f"[{box(1, 337, 3, 4)}]", "y1 above the height"),
        (f"[{box(-1, 2, 3, 4)}]", "negative"),
        ('[{"bbox_2d": [1.5, 2, 3, 4], "label": "x"}]', "float"),
        ('[{"bbox_2d": [01, 2, 3, 4], "label": "x"}]', "leading zero"),
        ('[{"bbox_2d": [1, 2, 3, 4, 5], "label": "x"}]', "5 coordinates"),
        ('[{"bbox_2d": [1, 2, 3], "label": "x"}]', "3 coordinates"),
        (f"[{box()}, {box()}]", "2 items when max_items=1"),
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": 1}]', "extra key"),
        ('[{"bbox_2d": [1, 2, 3, 4]}]', "missing label"),
        ('[{"label": "x", "bbox_2d": [1, 2, 3, 4]}]', "keys out of schema order"),
        (f"[{box(label='abcdefghijklm')}]", "label too long"),
        (f"[{box(label='')}]", "empty label"),
        (f"[{box(label='a' + chr(10) + 'b')}]", "raw newline in label"),
        (f"[{box(label='a' + chr(1) + 'b')}]", "raw control character in label"),
        ('{"bbox_2d": [1, 2, 3, 4], "label": "x"}', "object, not a list"),
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}', "unterminated"),
    ],
)
def test_invalid_answers_are_rejected(one_box: object, text: str, why: str) -> None:
    assert not accepts(one_box, text), why


def test_max_items_is_enforced(compiler: object) -> None:
    grammar = compile_schema(compiler, box_list_schema(100, 100, max_items=3, max_label_chars=8))
    assert accepts(grammar, "[" + ", ".join([box(label="x")] * 3) + "]")
    assert not accepts(grammar, "[" + ", ".join([box(label="x")] * 4) + "]")


def test_relative_bounds_1000(compiler: object) -> None:
    grammar = compile_schema(compiler, box_list_schema(1000, 1000, max_items=1, max_label_chars=8))
    assert accepts(grammar, f"[{box(1000, 1000, 1000, 1000, 'x')}]")
    assert not accepts(grammar, f"[{box(1001, 0, 0, 0, 'x')}]")


def test_the_ebnf_is_xgrammars_own_json_schema_grammar(compiler: object) -> None:
    """Printed and parsed again, the grammar accepts what xgrammar's schema compiler accepts."""
    schema = box_list_schema(448, 336, max_items=2, max_label_chars=12)
    direct = compiler.compile_json_schema(
        json.dumps(schema), any_whitespace=False, separators=(", ", ": ")
    )
    via_text = compile_schema(compiler, schema)
    samples = [
        "[]",
        f"[{box()}]",
        f"[{box()}, {box(5, 6, 7, 8, 'x')}]",
        f"[{box()}, {box()}, {box()}]",
        '[{"bbox_2d":[1,2,3,4],"label":"x"}]',
        f"[{box(449, 0, 0, 0, 'x')}]",
        f"[{box(label='abcdefghijklm')}]",
    ]
    assert [accepts(via_text, t) for t in samples] == [accepts(direct, t) for t in samples]
    assert [accepts(via_text, t) for t in samples] == [True, True, True] + [False] * 4


def test_without_any_whitespace_only_the_json_dumps_spacing_is_allowed(one_box: object) -> None:
    """any_whitespace=False: exactly `json.dumps` default separators (", " and ": "), no others."""
    value = [{"bbox_2d": [1, 2, 3, 4], "label": "x"}]
    assert accepts(one_box, json.dumps(value))
    assert json.dumps(value) == '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]'
    compact = json.dumps(value, separators=(",", ":"))
    assert compact == '[{"bbox_2d":[1,2,3,4],"label":"x"}]'
    assert not accepts(one_box, compact)
    for spaced in (
        '[ {"bbox_2d": [1, 2, 3, 4], "label": "x"}]',
        '[{"bbox_2d" : [1, 2, 3, 4], "label": "x"}]',
        '[{"bbox_2d": [1, 2, 3, 4],"label": "x"}]',
        '[{"bbox_2d": [1,2,3,4], "label": "x"}]',
        '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]\n',
        "[ ]",
        "[\n]",
    ):
        assert not accepts(one_box, spaced), spaced


def test_stop_token_terminates_after_a_complete_answer(compiler: object, one_box: object) -> None:
    matcher = xgr.GrammarMatcher(one_box)
    assert matcher.accept_string("[]")
    assert matcher.is_completed() and not matcher.is_terminated()
    assert matcher.accept_token(compiler.stop_token_id)
    assert matcher.is_terminated()


def test_stop_token_is_refused_mid_answer(compiler: object, one_box: object) -> None:
    matcher = xgr.GrammarMatcher(one_box)
    assert matcher.accept_string('[{"bbox_2d": [1')
    assert not matcher.is_completed()
    assert not matcher.accept_token(compiler.stop_token_id)
    assert not matcher.is_terminated()


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("yes", True),
        ("no", True),
        ("Yes", False),
        (" yes", False),
        ("yes.", False),
        ("yesno", False),
        ("maybe", False),
        ("", False),
        ("ye", False),  # a prefix is accepted but not complete
    ],
)
def test_yes_no_grammar_accepts_only_yes_or_no(compiler: object, text: str, ok: bool) -> None:
    grammar = compiler.compile_grammar(yes_no_constraint().ebnf())
    assert accepts(grammar, text) is ok


def test_escaped_choices_compile_and_match_literally(compiler: object) -> None:
    grammar = compiler.compile_grammar(Constraint(choices=('a"b', "c\\d")).ebnf())
    assert accepts(grammar, 'a"b')
    assert accepts(grammar, "c\\d")
    assert not accepts(grammar, "ab")
