"""Backend-neutral output constraints; each backend compiles them with xgrammar."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


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

    def ebnf(self) -> str | None:
        """The EBNF grammar for a choice constraint (None for JSON constraints)."""
        if not self.choices:
            return None
        alts = " | ".join(
            '"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in self.choices
        )
        return f"root ::= {alts}"


def yes_no_constraint() -> Constraint:
    """The visual check's answer: exactly `yes` or `no`."""
    return Constraint(choices=("yes", "no"), max_tokens=4)
