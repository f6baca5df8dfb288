"""Backend-neutral output constraints and the one xgrammar EBNF grammar both backends compile.

Both backends constrain with the same grammar text (`Constraint.ebnf()`): the transformers
backend compiles it with its own xgrammar compiler, the vLLM backend hands it to vLLM as
`StructuredOutputsParams(grammar=...)`. vLLM's own JSON-schema path is not used, because its
whitespace options differ across versions (0.32 turns `disable_any_whitespace` into the compact
`","`/`":"` separators, which Qwen never writes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
# Qwen's native JSON spacing (json.dumps' default), with no other whitespace anywhere.
JSON_SEPARATORS = (", ", ": ")


def box_list_schema(max_x: int, max_y: int, *, max_items: int, max_label_chars: int) -> dict:
    """JSON schema of `[{"bbox_2d": [x1, y1, x2, y2], "label": str}]` bounded to the model frame.

    Example:
        >>> box_list_schema(448, 336, max_items=1, max_label_chars=32)["maxItems"]
        1
    """
    x = {"type": "integer", "minimum": 0, "maximum": max_x}
    y = {"type": "integer", "minimum": 0, "maximum": max_y}
    box = {
        "type": "object",
        "properties": {
            "bbox_2d": {
                "type": "array",
                "prefixItems": [x, y, x, y],
                "items": False,
                "minItems": 4,
                "maxItems": 4,
            },
            # A pattern rather than maxLength: xgrammar's plain JSON string admits raw control
            # characters, which json.loads rejects; labels need no quotes or escapes either.
            "label": {
                "type": "string",
                "pattern": f'^[^\\u0000-\\u001f"\\\\]{{1,{max_label_chars}}}$',
            },
        },
        "required": ["bbox_2d", "label"],
        "additionalProperties": False,
    }
    return {"type": "array", "items": box, "minItems": 0, "maxItems": max_items}


def point_list_schema(max_x: int, max_y: int, *, max_items: int, max_label_chars: int) -> dict:
    """JSON schema of `[{"point_2d": [x, y], "label": str}]` bounded to the model frame.

    Example:
        >>> point_list_schema(448, 336, max_items=1, max_label_chars=32)["items"]["required"]
        ['point_2d', 'label']
    """
    schema = box_list_schema(max_x, max_y, max_items=max_items, max_label_chars=max_label_chars)
    item = schema["items"]
    coords = item["properties"].pop("bbox_2d")
    coords.update(prefixItems=coords["prefixItems"][:2], minItems=2, maxItems=2)
    item["properties"] = {"point_2d": coords, **item["properties"]}
    item["required"] = ["point_2d", "label"]
    return schema


@dataclass(frozen=True)
class Constraint:
    """What the model may write: a JSON schema, or one of a few fixed choices.

    With `think`, the answer is `<think>free text</think>\\n<answer>JSON</answer>`, the free text
    bounded by `think_max_tokens` (a grammar cannot bound `any_text`, so backends generate the
    think under its own budget and then force the closing tags).
    """

    json_schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()
    think: bool = False
    think_max_tokens: int = 256
    max_tokens: int = 128
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.json_schema is None) == (not self.choices):
            raise ValueError("a Constraint has either a json_schema or choices")

    def ebnf(self) -> str:
        """The xgrammar EBNF grammar of the answer, the one text every backend compiles.

        Example:
            >>> Constraint(choices=("yes", "no")).ebnf()
            'root ::= "yes" | "no"'
        """
        if self.json_schema is None:
            alts = " | ".join(
                '"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in self.choices
            )
            return f"root ::= {alts}"
        return json_schema_ebnf(json.dumps(self.json_schema))


@lru_cache(maxsize=512)
def json_schema_ebnf(schema_json: str) -> str:
    """xgrammar's EBNF for a JSON schema: `JSON_SEPARATORS`, no free whitespace, strict.

    Only the rules reachable from `root` are kept: xgrammar prints its generic JSON rules
    (`basic_any`, `basic_number`, ...) with every schema, and vLLM parses the whole text again
    for each request it validates (0.47 against 0.25 ms of its API process for a box answer's
    2.3k against 1.1k characters). The language is the same; a text that fails to parse keeps
    every rule.
    """
    import xgrammar as xgr  # lazily: only a backend that compiles grammars needs it

    full = str(
        xgr.Grammar.from_json_schema(
            schema_json, any_whitespace=False, separators=JSON_SEPARATORS, strict_mode=True
        )
    )
    pruned = reachable_rules(full)
    try:
        xgr.Grammar.from_ebnf(pruned)
    except Exception:  # a printer format this pruning does not know: the text as printed
        return full
    return pruned


_RULE_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) ::= (.*)$")
# String literals and character classes, whose contents are never rule names.
_LITERALS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reachable_rules(ebnf: str, root: str = "root") -> str:
    """The rules of a one-rule-per-line EBNF text that `root` reaches, in their order.

    A text with a line that is not a rule is returned unchanged.

    Example:
        >>> print(reachable_rules('a ::= "x"\\nroot ::= ("[" b "]")\\nb ::= "a"'))
        root ::= ("[" b "]")
        b ::= "a"
    """
    lines = [line for line in ebnf.splitlines() if line.strip()]
    matches = [_RULE_LINE.match(line) for line in lines]
    if not all(matches):
        return ebnf
    bodies = {m[1]: m[2] for m in matches if m is not None}
    if root not in bodies:
        return ebnf
    seen = {root}
    todo = [root]
    while todo:
        body = _LITERALS.sub(" ", bodies[todo.pop()])
        for name in _NAME.findall(body):
            if name in bodies and name not in seen:
                seen.add(name)
                todo.append(name)
    return "\n".join(m[0] for m in matches if m is not None and m[1] in seen)


def yes_no_constraint() -> Constraint:
    """The visual check's answer: `yes` or `no`, cut after its first token.

    The first token decides the branch and P(yes) is read from it; the rest of a multi-token
    `yes` (and the end of turn) is forced by the grammar, so generating it costs engine steps
    and tells nothing.
    """
    return Constraint(choices=("yes", "no"), max_tokens=1)
