"""A Constraint's EBNF grammar written in pure Python, for backends that must not import xgrammar.

`Constraint.ebnf()` asks xgrammar to compile the JSON schema, and xgrammar imports torch. The
openai backend (a gateway in front of a remote vLLM) runs without torch, so it writes the same
language itself: `box_list_schema`'s arrays, objects with ordered required properties, bounded
integers and the label's character class, with boxguard's separators (`", "`, `": "`) and no
other whitespace. Only that subset of JSON schema is covered; anything else is a ValueError.
The one difference from xgrammar's grammar: a label may not use JSON escapes (`\\/`, `\\u00e9`);
the character class already excludes `"`, `\\` and control characters, so no label needs one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .constraints import JSON_SEPARATORS, Constraint

ITEM_SEP, KEY_SEP = JSON_SEPARATORS
_LENGTH = re.compile(r"\{1,(\d+)\}\$$")
LABEL_CLASS = r"[^\0-\x1f\"\\]"


def _literal(text: str) -> str:
    """An EBNF string literal."""
    return json.dumps(text)


def uint_upto(n: int) -> str:
    """Alternatives matching the decimal integers 0..n without leading zeros.

    Example:
        >>> uint_upto(42)
        '"0" | [1-9] | [1-3] [0-9] | "4" [0-1] | "42"'
    """
    if n < 0:
        raise ValueError("the grammar covers non-negative integers only")
    digits = str(n)
    alts = ['"0"']
    if n == 0:
        return alts[0]
    for length in range(1, len(digits)):  # every shorter length, any value
        alts.append(" ".join(["[1-9]"] + ["[0-9]"] * (length - 1)))
    for i, d in enumerate(digits):  # same length: n's prefix, a smaller digit, then anything
        low, high = (1 if i == 0 else 0), int(d) - 1
        if high >= low:
            head = [_literal(digits[:i])] if i else []
            rng = f"[{low}-{high}]" if high > low else _literal(str(low))
            alts.append(" ".join(head + [rng] + ["[0-9]"] * (len(digits) - i - 1)))
    alts.append(_literal(digits))
    return " | ".join(alts)


class _Writer:
    """Rules of one grammar, named in the order they are written."""

    def __init__(self) -> None:
        self.rules: list[str] = []

    def rule(self, body: str) -> str:
        """Add a rule and return its name."""
        name = f"r{len(self.rules) + 1}"
        self.rules.append(f"{name} ::= {body}")
        return name

    def value(self, schema: dict[str, Any]) -> str:
        """The rule of one schema node."""
        kind = schema.get("type")
        if kind == "array" and "prefixItems" in schema:
            parts = [self.value(item) for item in schema["prefixItems"]]
            if schema.get("items", False) is not False or schema.get("minItems") != len(parts):
                raise ValueError("a tuple array must have exactly its prefixItems")
            return self.rule(" ".join(['"["', f" {_literal(ITEM_SEP)} ".join(parts), '"]"']))
        if kind == "array":
            item = self.value(schema["items"])
            most = int(schema["maxItems"])
            if schema.get("minItems", 0) != 0 or most < 1:
                raise ValueError("a list must allow 0 items and at least 1")
            if most == 1:
                return self.rule(f'("[" {item} "]") | ("[" "]")')
            more = self.rule(f"{_literal(ITEM_SEP)} {item}")
            return self.rule(f'("[" {item} {more}{{0, {most - 1}}} "]") | ("[" "]")')
        if kind == "object":
            props = schema["properties"]
            if schema.get("additionalProperties") is not False or schema["required"] != list(props):
                raise ValueError("an object must require all its properties, and only them")
            fields = [
                f"{_literal(json.dumps(k) + KEY_SEP)} {self.value(v)}" for k, v in props.items()
            ]
            return self.rule(f'"{{" {f" {_literal(ITEM_SEP)} ".join(fields)} "}}"')
        if kind == "integer":
            if schema.get("minimum") != 0:
                raise ValueError("integers must have minimum 0")
            return self.rule(uint_upto(int(schema["maximum"])))
        if kind == "string":
            pattern = str(schema.get("pattern", ""))
            match = _LENGTH.search(pattern)
            # box_list_schema's label pattern, and no other.
            if match is None or pattern != f'^[^\\u0000-\\u001f"\\\\]{{1,{match[1]}}}$':
                raise ValueError(f"unsupported string pattern {pattern!r}")
            return self.rule(f'"\\"" {LABEL_CLASS}{{1, {match[1]}}} "\\""')
        raise ValueError(f"unsupported schema node {schema!r}")


def constraint_ebnf(constraint: Constraint) -> str:
    """`constraint.ebnf()`'s language without xgrammar: the answer JSON or the fixed choices.

    Example:
        >>> from boxguard.server.constraints import box_list_schema
        >>> print(constraint_ebnf(Constraint(json_schema=box_list_schema(
        ...     9, 9, max_items=1, max_label_chars=8))).splitlines()[-1])
        root ::= r8
    """
    if constraint.json_schema is None:
        return constraint.ebnf()  # the choices need no compiler
    writer = _Writer()
    top = writer.value(constraint.json_schema)
    return "\n".join([*writer.rules, f"root ::= {top}"])
